"""``segakit demo``: the gallery that ``make demo`` writes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from segakit.cli.options import (
    DEVICE_HELP,
    MODEL_HELP,
    THREADS_HELP,
    Quiet,
    device_and_dtype,
    progress_bar,
    use_threads,
)
from segakit.core.errors import UserError


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the gallery PNGs.")] = Path("out/demo"),
    model: Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)] = "embedded",
    steps: Annotated[int, typer.Option(help="Denoising steps.")] = 25,
    device: Annotated[str | None, typer.Option(help=DEVICE_HELP)] = None,
    threads: Annotated[int | None, typer.Option("--threads", metavar="N", help=THREADS_HELP)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a gallery already in --out.")] = False,
    quiet: Quiet = False,
) -> None:
    """Write a small gallery: plain samples, SEGA edits, and an edit-strength strip."""
    from segakit.core.outputs import plan_folder
    from segakit.sega.demo import DEMO_FILES, demo_steps, run_demo

    if steps < 1:
        raise UserError(f"--steps {steps} is below 1; use 1 or more denoising steps.")
    plan_folder(out, "--out", DEMO_FILES, overwrite)
    use_threads(threads)
    dev, _ = device_and_dtype(device, "fp32")
    with progress_bar("demo") as bar:
        task = bar.add_task("demo", total=demo_steps(steps))
        written = run_demo(out, model=model, steps=steps, device=dev, progress=lambda k: bar.advance(task, k))
    for path in written:
        typer.echo(str(path))
