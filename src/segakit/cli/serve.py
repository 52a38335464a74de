"""``segakit serve``: the web app and the HTTP API on one model, in one process."""

from __future__ import annotations

from typing import Annotated

import typer

from segakit.cli.options import DEVICE_HELP, MODEL_HELP
from segakit.core.errors import UserError
from segakit.serve.config import DEFAULT_MAX_BATCH_ROWS, DEFAULT_MAX_QUEUE


def serve(
    model: Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)] = "embedded",
    host: Annotated[
        str, typer.Option(help="Address to listen on; anything but loopback requires a token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 7860,
    token: Annotated[
        str | None,
        typer.Option(help="Token every request must carry (default: $SEGAKIT_TOKEN; required off loopback)."),
    ] = None,
    device: Annotated[str | None, typer.Option(help=DEVICE_HELP)] = None,
    max_queue: Annotated[
        int, typer.Option("--max-queue", help="Requests admitted at once (running + waiting); more get 429.")
    ] = DEFAULT_MAX_QUEUE,
    max_steps: Annotated[int, typer.Option("--max-steps", help="Most denoising steps per request.")] = 50,
    max_images: Annotated[int, typer.Option("--max-images", help="Most images per request.")] = 4,
    max_side: Annotated[int, typer.Option("--max-side", help="Largest height or width in pixels.")] = 512,
    max_concepts: Annotated[int, typer.Option("--max-concepts", help="Most concepts (edits) per request.")] = 6,
    max_body_mb: Annotated[float, typer.Option("--max-body-mb", help="Largest request body (an upload) in MB.")] = 8.0,
    max_batch_rows: Annotated[
        int,
        typer.Option(
            "--max-batch-rows",
            help="Denoiser rows of one shared call: waiting requests that differ only in prompt, seed, image count "
            "and concepts run together while their rows (images x (2 + concepts)) fit; 1 runs each request alone.",
        ),
    ] = DEFAULT_MAX_BATCH_ROWS,
    preview_steps: Annotated[
        int, typer.Option("--preview-steps", help="Steps of the app's live preview while a slider moves.")
    ] = 6,
    threads: Annotated[int | None, typer.Option(help="torch threads for the model (default: torch's).")] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning.")] = "info",
) -> None:
    """Serve a web app (Gradio) and an HTTP API (FastAPI; /docs) for generation with concepts and directions."""
    from segakit.cli.options import device_and_dtype
    from segakit.serve.config import Limits, ServeConfig, resolve_token
    from segakit.serve.server import serve as run

    if not 0 < port < 65536:
        raise UserError(f"--port {port} is outside 1 to 65535.")
    if preview_steps < 1:
        raise UserError(f"--preview-steps {preview_steps} is below 1; use 1 or more (4-8 is usual).")
    limits = Limits(max_queue=max_queue, max_steps=max_steps, max_images=max_images, max_side=max_side,
                    max_concepts=max_concepts, max_body_mb=max_body_mb, max_batch_rows=max_batch_rows)  # fmt: skip
    limits.check()
    device, _ = device_and_dtype(device, "fp32")  # the one rule of every command: cuda when present
    config = ServeConfig(model=model, host=host, port=port, token=resolve_token(host, token), device=device,
                         limits=limits, preview_steps=preview_steps)  # fmt: skip
    if threads is not None:
        import torch

        torch.set_num_threads(max(1, threads))
    typer.echo(
        f"segakit serve: http://{host}:{port}/ (API docs at /docs){' - token required' if config.token else ''}",
        err=True,
    )
    run(config, log_level)
