"""An ASGI layer in front of the API and the app: the token (when one is set) and the request-size cap.

The token is accepted as ``Authorization: Bearer TOKEN``, an ``X-Segakit-Token`` header, the cookie
``segakit_token``, or ``?token=TOKEN`` in the address (the browser's way in: the answer then sets the cookie,
so the app's own requests carry it). Bodies above the cap get 413 before the application reads them.
"""

from __future__ import annotations

import hmac
import json
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

from starlette.exceptions import HTTPException

COOKIE = "segakit_token"
HEADER = b"x-segakit-token"


class TooLarge(HTTPException):
    """A body found too large while it is read (no Content-Length given): 413 with the sentence."""

    def __init__(self, message: str) -> None:
        super().__init__(413, message)


async def send_error(send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(headers or [])]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


class Guard:
    def __init__(self, app, token: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.token = token
        self.max_body_bytes = max_body_bytes

    def _presented(self, scope) -> tuple[str | None, bool]:
        """The token the request carries, and whether it came in the query string."""
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip(), False
        if HEADER in headers:
            return headers[HEADER].decode("latin-1").strip(), False
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if "token" in query:
            return query["token"][0], True
        cookie = SimpleCookie(headers.get(b"cookie", b"").decode("latin-1"))
        if COOKIE in cookie:
            return cookie[COOKIE].value, False
        return None, False

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        set_cookie = False
        if self.token is not None:
            given, set_cookie = self._presented(scope)
            if given is None or not hmac.compare_digest(given.encode(), self.token.encode()):
                if scope["type"] == "websocket":
                    return await send({"type": "websocket.close", "code": 1008})
                if given is None:
                    msg = "This server requires a token; send 'Authorization: Bearer TOKEN', or open the app at /?token=TOKEN."
                    return await send_error(send, 401, msg, [(b"www-authenticate", b"Bearer")])
                return await send_error(
                    send, 403, "The token given is not this server's token; check --token or $SEGAKIT_TOKEN."
                )
        if scope["type"] == "websocket":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            return await send_error(send, 413, self._too_large(int(length)))
        received = 0
        started = False

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise TooLarge(self._too_large(received))
            return message

        async def sending(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if set_cookie:
                    cookie = f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict".encode()
                    message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
            await send(message)

        try:
            await self.app(scope, counting_receive, sending)
        except TooLarge as exc:
            if not started:
                await send_error(send, 413, exc.detail)

    def _too_large(self, size: int) -> str:
        return (f"The request body is {size / 2**20:.1f} MB, above this server's limit of "
                f"{self.max_body_bytes / 2**20:g} MB (--max-body-mb).")  # fmt: skip
