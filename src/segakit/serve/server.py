"""The API and the app mounted in one FastAPI application, behind the token and size guard, run by uvicorn."""

from __future__ import annotations

import logging
import os

from segakit.serve.config import ServeConfig
from segakit.serve.guard import Guard
from segakit.serve.service import Service

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing leaves the machine
# Idle keep-alive connections are kept this long (uvicorn's default is 5 s): a client that waits out a 429's
# Retry-After on its connection must not find it closed under it when it sends again.
KEEP_ALIVE_S = 75


def create_app(service: Service):
    """The ASGI application: ``/api/...`` and ``/docs`` (FastAPI), the Gradio app at ``/``."""
    import gradio as gr

    from segakit.serve.api import build_api
    from segakit.serve.webapp import build_app

    api = build_api(service)
    # system fonts: the default theme would fetch Google's, and nothing may be fetched
    theme = gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )
    app = gr.mount_gradio_app(api, build_app(service), path="/", ssr_mode=False, theme=theme, footer_links=["api"],
                              max_file_size=service.config.limits.max_body_bytes)  # fmt: skip
    return Guard(app, service.config.token, service.config.limits.max_body_bytes)


def serve(config: ServeConfig, log_level: str = "info") -> None:
    """Load the model, then serve until interrupted."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("segakit.serve").setLevel(getattr(logging, log_level.upper(), logging.INFO))
    service = Service.load(config)
    try:
        uvicorn.run(
            create_app(service),
            host=config.host,
            port=config.port,
            log_level=log_level,
            timeout_keep_alive=KEEP_ALIVE_S,
        )
    finally:
        service.close()
