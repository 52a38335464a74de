"""What a server is started with: the model, the address, the token and the per-request limits."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

from segakit.core.errors import UserError

TOKEN_ENV = "SEGAKIT_TOKEN"
LOOPBACK_NAMES = ("localhost",)
# measured (docs/results/serve/report.md): a shared call of up to 64 rows, and a queue deep enough to fill the next
# call while one runs (under the load test, calls held about 4 requests at a queue of 8, the limit before batching,
# and served 1.19x the requests alone; about 12 at 32, and 1.75x)
DEFAULT_MAX_BATCH_ROWS = 64
DEFAULT_MAX_QUEUE = 32


@dataclass(frozen=True)
class Limits:
    """Per-request caps and the queue bound; a request over a cap gets a 4xx sentence naming the cap."""

    max_queue: int = DEFAULT_MAX_QUEUE  # jobs admitted at once (running + waiting); one more gets 429 with Retry-After
    max_steps: int = 50
    max_images: int = 4  # num_images of one request
    max_side: int = 512  # height and width, in pixels
    max_concepts: int = 6  # edits of one request (the app shows this many concept rows)
    max_sweep: int = 8  # scales of one strength strip
    max_body_mb: float = 8.0  # any request body (JSON, an uploaded image in base64)
    # denoiser rows of one shared call: waiting requests that can share a call join it while their rows (images x
    # (2 + concepts)) fit; 1 runs every request alone (docs/serving.md, batching)
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS

    def check(self) -> None:
        for name in ("max_queue", "max_steps", "max_images", "max_side", "max_concepts", "max_sweep", "max_batch_rows"):
            value = getattr(self, name)
            if value < 1:
                raise UserError(f"--{name.replace('_', '-')} {value} is below 1; use 1 or more.")
        if not self.max_body_mb > 0:
            raise UserError(f"--max-body-mb {self.max_body_mb} is not above 0; use a size in MB such as 8.")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)


@dataclass(frozen=True)
class ServeConfig:
    model: str = "embedded"
    host: str = "127.0.0.1"
    port: int = 7860
    token: str | None = None  # required on every request when set (always set off loopback)
    device: str = "cpu"
    limits: Limits = field(default_factory=Limits)
    preview_steps: int = 6  # the app's live preview while a slider moves


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_token(host: str, token: str | None) -> str | None:
    """The token the server requires: ``token``, else $SEGAKIT_TOKEN; off loopback one must exist."""
    token = token if token is not None else os.environ.get(TOKEN_ENV) or None
    if token is not None and len(token) < 8:
        raise UserError(f"The token is {len(token)} characters long; use 8 or more (e.g. from: python -c 'import secrets; print(secrets.token_urlsafe())').")  # fmt: skip
    if token is None and not is_loopback(host):
        raise UserError(f"--host {host} listens beyond this machine, so a token is required; pass --token or set ${TOKEN_ENV}.")  # fmt: skip
    return token
