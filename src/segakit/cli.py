"""The ``segakit`` command line.

``segakit generate`` (SEGA generation, strength sweeps, regeneration from a PNG) lives here; the
faces-world commands (``segakit world ...``) live beside the world in ``segakit/world/cli.py``.
Bad input prints one sentence and exits with status 2, without a traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from segakit.errors import UserError

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Library chatter (optional backends, deprecations) is not for the command line user.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

app = typer.Typer(
    name="segakit",
    help="Semantic control over text-to-image diffusion models (SEGA guidance, concept directions, editing).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)



@app.callback()
def _root() -> None:
    """Semantic control over text-to-image diffusion models."""


EDIT_HELP = (
    "An edit concept, repeatable: [+|-]CONCEPT[:KEY=VALUE,...]. '+' adds, '-' removes. Keys: scale (s), "
    "threshold (t), warmup (w), cooldown (c, 'none' for never), weight (wt). Example: '+glasses:s=6,t=0.95,w=5'."
)


def _device_and_dtype(device: str | None, dtype: str):
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda", "mps") and not device.startswith("cuda:"):
        raise UserError(f"--device {device!r} is not one of cpu, cuda, cuda:N, mps.")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device!r} was asked for, but this machine has no CUDA GPU; use --device cpu.")
    table = {"auto": None, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if dtype not in table:
        raise UserError(f"--dtype {dtype!r} is not one of {', '.join(table)}.")
    chosen = table[dtype] or (torch.float16 if device.startswith("cuda") else torch.float32)
    return device, chosen


def _parse_sweep(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--sweep {text!r} is not a comma-separated list of scales, such as 0,2,4,6,8.") from None


@app.command()
def generate(
    prompt: Annotated[str | None, typer.Argument(help="The text prompt.")] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="'embedded', a hub id, or a local diffusers folder.")] = "embedded",
    edit: Annotated[list[str] | None, typer.Option("--edit", "-e", help=EDIT_HELP)] = None,
    negative: Annotated[str | None, typer.Option("--negative", help="Negative prompt.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the first image; image i uses seed + i.")] = 0,
    num_images: Annotated[int, typer.Option("--num-images", "-n", help="Number of images.")] = 1,
    steps: Annotated[int, typer.Option(help="Denoising steps.")] = 50,
    guidance: Annotated[float | None, typer.Option(help="Classifier-free guidance scale (default 7.5; SDXL 5.0).")] = None,
    height: Annotated[int | None, typer.Option(help="Image height in pixels (default: the model's).")] = None,
    width: Annotated[int | None, typer.Option(help="Image width in pixels (default: the model's).")] = None,
    momentum: Annotated[float, typer.Option(help="SEGA momentum scale s_m.")] = 0.1,
    momentum_beta: Annotated[float, typer.Option("--momentum-beta", help="SEGA momentum beta_m, in [0, 1).")] = 0.4,
    quantile_over: Annotated[str, typer.Option("--quantile-over", help="'channel' (diffusers) or 'image' (one quantile per image).")] = "channel",
    sweep: Annotated[str | None, typer.Option(help="Render the single --edit at these scales side by side, e.g. 0,2,4,6,8.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="A .png file, or a folder for several images.")] = Path("out"),
    from_png: Annotated[Path | None, typer.Option("--from-png", help="Regenerate from the parameters stored in a segakit PNG.")] = None,
    save_guidance: Annotated[Path | None, typer.Option("--save-guidance", help="Record the edits' guidance to this .safetensors file.")] = None,
    apply_guidance: Annotated[Path | None, typer.Option("--apply-guidance", help="Add a recorded guidance file at every step.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N or mps (default: cuda if present).")] = None,
    dtype: Annotated[str, typer.Option(help="auto, fp32, fp16 or bf16 (auto: fp16 on GPU, fp32 on CPU).")] = "auto",
) -> None:
    """Generate images with SEGA semantic guidance and write PNGs that carry every parameter."""
    from segakit.editspec import parse_edit
    from segakit.generate import GenerationParams, run
    from segakit.images import read_params
    from segakit.models import edit_defaults

    if from_png is not None:
        if prompt is not None or edit:
            raise UserError("--from-png takes the prompt and edits from the PNG; do not give them again.")
        params = GenerationParams.from_json(read_params(from_png))
    else:
        if prompt is None:
            raise UserError("No prompt given; write one, e.g. segakit generate 'a face of a person' --edit +glasses.")
        params = GenerationParams(
            prompt=prompt, model=model, edits=[parse_edit(s, edit_defaults(model)) for s in edit or []], negative_prompt=negative,
            seed=seed, num_images=num_images, steps=steps, guidance=guidance, height=height, width=width,
            momentum_scale=momentum, momentum_beta=momentum_beta, quantile_over=quantile_over,
            sweep=_parse_sweep(sweep), apply_guidance=str(apply_guidance) if apply_guidance else None,
        )  # fmt: skip
    params.validate()
    dev, torch_dtype = _device_and_dtype(device, dtype)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    frames = len(params.sweep) if params.sweep else 1
    with Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), transient=True, disable=not sys.stderr.isatty(),
    ) as bar:  # fmt: skip
        task = bar.add_task("denoising", total=params.steps * frames)
        written = run(params, out, device=dev, dtype=torch_dtype, progress=lambda k: bar.advance(task, k),
                      save_guidance=save_guidance)  # fmt: skip
    for path in written:
        typer.echo(str(path))


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the gallery PNGs.")] = Path("out/demo"),
    model: Annotated[str, typer.Option("--model", "-m", help="'embedded', a hub id, or a local diffusers folder.")] = "embedded",
    steps: Annotated[int, typer.Option(help="Denoising steps.")] = 25,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N or mps (default: cuda if present).")] = None,
) -> None:
    """Write a small gallery: plain samples, SEGA edits, and an edit-strength strip."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from segakit.demo import demo_steps, run_demo

    if steps < 1:
        raise UserError(f"--steps {steps} is below 1; use 1 or more denoising steps.")
    dev, _ = _device_and_dtype(device, "fp32")
    with Progress(TextColumn("demo"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True,
                  disable=not sys.stderr.isatty()) as bar:  # fmt: skip
        task = bar.add_task("demo", total=demo_steps(steps))
        written = run_demo(out, model=model, steps=steps, device=dev, progress=lambda k: bar.advance(task, k))
    for path in written:
        typer.echo(str(path))


def main() -> None:
    """Console entry point: bad input prints one sentence and exits with status 2."""
    _register_subcommands()
    try:
        result = app(standalone_mode=False)
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        # Usage errors (click's, or typer's own copy of click): show the message, keep their exit code.
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            sys.exit(exc.exit_code)
        if type(exc).__name__ == "Abort":
            typer.echo("aborted", err=True)
            sys.exit(1)
        raise
    sys.exit(result if isinstance(result, int) else 0)


def _register_subcommands() -> None:
    try:
        from segakit.world.cli import world_app
    except ImportError:  # the world package is optional while it is being built
        return
    from segakit.eval.cli import eval_app

    registered = {g.name for g in app.registered_groups}
    if "world" not in registered:
        app.add_typer(world_app, name="world")
    if "eval" not in registered:
        app.add_typer(eval_app, name="eval")


if __name__ == "__main__":
    main()
