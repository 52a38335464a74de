"""The HTTP API: ``/api/generate``, ``/api/edit``, ``/api/health``; every bad request gets a 4xx and one sentence.

Errors are ``{"error": SENTENCE}``: 400 for a value the CLI would refuse (the CLI's sentence) or over a server
limit, 422 for a field of the wrong type or an unknown field, 401/403 for a missing/wrong token, 413 for a body
over the size cap, 429 with Retry-After when the queue is full, (editing runs as a queued job like generation).
"""

from __future__ import annotations

import asyncio
import base64
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from segakit.core.errors import UserError, spelling
from segakit.serve.editing import edit_params, submit_edit
from segakit.serve.schema import (
    EditRequest,
    ErrorResponse,
    GenerateRequest,
    GenerateResponse,
    ImageOut,
    decode_image,
)
from segakit.serve.service import Service
from segakit.serve.worker import Cancelled, Job, QueueFull

log = logging.getLogger("segakit.serve")
POLL_S = 0.1  # how often a waiting request checks that its client is still there
MAX_EDIT_SIDE = 4096
ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 403, 413, 422, 429)}


def validation_sentence(exc: RequestValidationError) -> tuple[int, str]:
    """The first problem pydantic found, as one sentence (malformed JSON: 400; a wrong field: 422)."""
    err = exc.errors()[0]
    kind, loc = err.get("type", ""), [str(p) for p in err.get("loc", ()) if p != "body"]
    if kind == "json_invalid":
        where = err.get("ctx", {}).get("error", "")
        return 400, f'The request body is not valid JSON ({where}); send a JSON object such as {{"prompt": "a face"}}.'
    if not loc:
        return 422, 'The request body must be a JSON object of parameters, such as {"prompt": "a face"}.'
    name = ".".join(p if not p.isdigit() else f"[{p}]" for p in loc).replace(".[", "[")
    if kind == "missing":
        return 422, f"Field {name!r} is missing; it is required."
    if kind == "extra_forbidden":
        return 422, f"Field {name!r} is not a parameter of this endpoint; see /docs for the fields it takes."
    msg = err.get("msg", "is not valid").rstrip(".")
    msg = msg[0].lower() + msg[1:] if msg else msg
    return 422, f"Field {name!r} got {err.get('input')!r}: {msg}."


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def wait_for(job: Job, request: Request):
    """The job's result; if the client goes away first, the job is cancelled and None is returned."""
    fut = asyncio.wrap_future(job.future)
    fut.add_done_callback(lambda f: f.cancelled() or f.exception())  # a cancelled job's outcome is nobody's
    while True:
        done, _ = await asyncio.wait({fut}, timeout=POLL_S)
        if done:
            return fut.result()
        if await request.is_disconnected():
            job.cancel()
            log.info('{"job": %d, "status": "client gone", "cancelling": true}', job.id)
            return None


def _limited_openapi(app: FastAPI, service: Service) -> None:
    """``/openapi.json`` with the server's limits (:func:`segakit.serve.openapi.with_limits`)."""
    from segakit.serve.openapi import with_limits

    plain = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            config = service.config
            names = service.library.names() if getattr(service, "library", None) is not None else []
            app.openapi_schema = with_limits(plain(), config.limits, config.model, names)
        return app.openapi_schema

    app.openapi = openapi


def _offline_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI from the files of the swagger-ui-bundle package, served here (no CDN)."""
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    from segakit.serve.openapi import ASSETS, docs_page, swagger_assets

    folder = swagger_assets()
    if folder is None:  # the serve extra installs it; without it /docs says what to install, and the schema stays

        @app.get("/docs", include_in_schema=False)
        async def no_docs() -> HTMLResponse:
            return HTMLResponse("<p>The API's documentation page needs the swagger-ui-bundle package "
                                "(pip install 'segakit[serve]'); the schema is at <a href='/openapi.json'>/openapi.json</a>.</p>")  # fmt: skip

        return
    app.mount(ASSETS, StaticFiles(directory=folder), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(docs_page(app.title, app.openapi_url or "/openapi.json"))


def build_api(service: Service) -> FastAPI:
    app = FastAPI(
        title="segakit", version=service.health()["segakit_version"], docs_url=None, redoc_url=None,
        description="Semantic control over text-to-image diffusion: SEGA concepts, h-space directions, editing. "
                    "Field names are those of the PNG parameters and of `segakit generate`'s options; "
                    "the minimum, maximum and enum of a field are this server's limits, set when it started.",
    )  # fmt: skip
    _limited_openapi(app, service)
    _offline_docs(app)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return error(*validation_sentence(exc))

    @app.exception_handler(UserError)
    async def _user(request: Request, exc: UserError):
        with spelling("json"):  # the sentence names the JSON fields the client sent
            return error(400, str(exc))

    @app.exception_handler(QueueFull)
    async def _busy(request: Request, exc: QueueFull):
        return error(429, str(exc), {"Retry-After": str(exc.retry_after)})

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):
        log.exception("request %s %s failed", request.method, request.url.path)
        return error(
            500,
            f"The server failed on this request ({type(exc).__name__}); the details are in its log, and it keeps serving.",
        )

    @app.get("/api/health", summary="Whether the server is up, its model, queue and limits")
    async def health() -> dict:
        return service.health()

    async def answer(job, request: Request):
        """The finished job's images as base64 PNGs with their parameters (499 when the client has gone)."""
        try:
            images = await wait_for(job, request)
        except Cancelled:
            images = None
        if images is None:
            return Response(status_code=499)  # nobody is listening
        return GenerateResponse(
            images=[ImageOut(png=base64.b64encode(im.png).decode(), seed=im.params["seed"], parameters=im.params) for im in images],
            seconds=round(job.run_seconds, 3), queue_seconds=round(job.wait_seconds, 3),
        )  # fmt: skip

    @app.post("/api/generate", response_model=GenerateResponse, responses=ERRORS,
              summary="Generate images with SEGA concepts and directions; PNGs carry their parameters")  # fmt: skip
    async def generate(req: GenerateRequest, request: Request):
        params = service.params(req)
        job = service.submit(params)
        return await answer(job, request)

    @app.post("/api/edit", response_model=GenerateResponse, responses=ERRORS,
              summary="Edit an image following an instruction (Pix2Pix-OnTheFly or SEGA on its inversion)")  # fmt: skip
    async def edit_image(req: EditRequest, request: Request):
        image = decode_image(req.image)
        if max(image.size) > MAX_EDIT_SIDE:
            raise UserError(
                f"image is {image.size[0]}x{image.size[1]} pixels; this server edits images up to {MAX_EDIT_SIDE} pixels a side."
            )
        job = submit_edit(service, image, edit_params(req, service.config.model, service.config.limits))
        return await answer(job, request)

    return app
