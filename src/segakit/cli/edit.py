"""``segakit edit IMAGE "INSTRUCTION"``: instruction-guided editing of a real image (Pix2Pix-OnTheFly).

Writes one PNG that carries every parameter (``--from-png`` repeats the edit). Bad input: one sentence, exit 2,
no file written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from segakit.cli.options import DEVICE_HELP, MODEL_HELP, device_and_dtype, progress_bar
from segakit.core.errors import UserError

CAPTIONS_HELP = "A caption of the image {when} the edit, repeatable (skips the {what})."


def edit(
    image: Annotated[Path | None, typer.Argument(help="The image to edit (any size or mode: converted as docs/editing.md says).")] = None,
    instruction: Annotated[str | None, typer.Argument(help="What to change, e.g. 'give her glasses'.")] = None,
    model: Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)] = "embedded",
    method: Annotated[str, typer.Option(help="onthefly (Pix2Pix-OnTheFly: cross-attention guided) or sega (LEDITS++: SEGA concepts on an edit-friendly inversion).")] = "onthefly",
    concept: Annotated[list[str] | None, typer.Option("--concept", help="--method sega: a concept to add (+glasses) or remove (-beard), repeatable.")] = None,
    skip: Annotated[float, typer.Option(help="--method sega: share of the noisiest steps skipped (LEDITS++: 0.15).")] = 0.15,
    threshold: Annotated[float, typer.Option(help="--method sega: the implicit masks' quantile (LEDITS++: 0.9).")] = 0.9,
    source_guidance: Annotated[float, typer.Option("--source-guidance", help="--method sega: guidance towards the source caption while inverting.")] = 3.5,
    source_caption: Annotated[str | None, typer.Option("--source-caption", help="A caption of the image (skips the captioner; the embedded model has its own).")] = None,
    captions_before: Annotated[list[str] | None, typer.Option("--captions-before", help=CAPTIONS_HELP.format(when="before", what="caption writer"))] = None,
    captions_after: Annotated[list[str] | None, typer.Option("--captions-after", help=CAPTIONS_HELP.format(when="after", what="caption writer"))] = None,
    captions: Annotated[int, typer.Option("--captions", help="How many captions the caption writer writes per side (1..10).")] = 3,
    show_captions: Annotated[bool, typer.Option("--show-captions", help="Print the source caption and the captions before/after.")] = False,
    captioner: Annotated[Path | None, typer.Option("--captioner", help="A local BLIP captioning model folder (safetensors); default on the embedded model: its own small one.")] = None,
    caption_writer: Annotated[Path | None, typer.Option("--caption-writer", help="A local causal language model folder (safetensors), e.g. Phi-2; default on the embedded model: its own small one.")] = None,
    steps: Annotated[int, typer.Option(help="Inversion steps = edit steps (the paper: 100; the embedded model: 25).")] = 25,
    guidance: Annotated[float, typer.Option(help="onthefly: classifier-free guidance of the edit pass (negative: the source caption); sega: each concept's scale.")] = 5.0,
    xa_guidance: Annotated[float, typer.Option("--xa-guidance", help="Step size of the cross-attention guidance (0 turns it off).")] = 0.15,
    direction_scale: Annotated[float, typer.Option("--direction-scale", help="Multiplier of the edit direction.")] = 1.0,
    regularize: Annotated[bool, typer.Option("--regularize/--no-regularize", help="pix2pix-zero's noise regularisation during inversion.")] = True,
    seed: Annotated[int, typer.Option(help="Seed (noise regularisation, caption writer).")] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="The output .png file.")] = Path("edited.png"),
    from_png: Annotated[Path | None, typer.Option("--from-png", help="Repeat the edit stored in a PNG written by segakit edit.")] = None,
    device: Annotated[str | None, typer.Option(help=DEVICE_HELP)] = None,
) -> None:
    """Edit a real image as an instruction says: invert, write before/after captions, edit with cross-attention guidance."""
    from segakit.core.images import read_params
    from segakit.editing.image import file_sha256, read_image
    from segakit.editing.params import EditParams

    if out.suffix.lower() != ".png":
        raise UserError(f"--out {str(out)!r} must be a .png file (the PNG carries the edit's parameters).")
    if from_png is not None:
        if image is not None or instruction is not None:
            raise UserError("--from-png takes the image and instruction from the PNG; do not give them again.")
        params = EditParams.from_json(read_params(from_png))
        if not params.image or not Path(params.image).is_file():
            raise UserError(f"The source image {params.image!r} recorded in {str(from_png)!r} is no longer there; edit it again by name.")
        if params.image_sha256 and file_sha256(params.image) != params.image_sha256:
            raise UserError(f"The source image {params.image!r} recorded in {str(from_png)!r} has changed since; edit it again by name.")
        image = Path(params.image)
    else:
        if image is None or instruction is None:
            raise UserError("Give an image and an instruction, e.g. segakit edit face.png 'give her glasses' --out glasses.png.")
        params = EditParams(
            instruction=instruction, model=model, method=method, source_caption=source_caption,
            captions_before=list(captions_before or []), captions_after=list(captions_after or []), num_captions=captions,
            steps=steps, guidance_scale=guidance, xa_guidance=xa_guidance, direction_scale=direction_scale,
            regularize=regularize, seed=seed, concepts=list(concept or []), skip=skip, threshold=threshold,
            source_guidance=source_guidance,
        )  # fmt: skip
    params.validate()
    picture = read_image(image)
    params.image, params.image_sha256 = str(Path(image).resolve()), file_sha256(image)
    _check_writable(out)
    dev, dtype = device_and_dtype(device, "fp32")
    run(params, picture, out, dev, captioner, caption_writer, show_captions)


def _check_writable(out: Path) -> None:
    """Fail before the (slow) edit if the output cannot be written."""
    from segakit.core.atomic import ensure_writable_dir

    ensure_writable_dir(out.parent if str(out.parent) else Path("."))
    if out.exists() and (out.is_dir() or not out.is_file()):
        raise UserError(f"--out {str(out)!r} is a folder or special file; give a .png file path.")


def run(params, picture, out: Path, device: str, captioner: Path | None, caption_writer: Path | None, show: bool) -> None:
    import time

    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from segakit import __version__
    from segakit.core.images import save_png
    from segakit.editing.pipeline import EditPipeline

    diffusers_logging.disable_progress_bar()  # loading bars are not for the command line user
    transformers_logging.disable_progress_bar()
    pipe = EditPipeline.from_pretrained(params.model, captioner=captioner, caption_writer=caption_writer).to(device)
    start = time.perf_counter()
    with progress_bar() as bar:
        task = bar.add_task("editing", total=(3 if params.method == "onthefly" else 2) * params.steps)
        result = pipe.run(params, picture, callback=lambda done, total: bar.update(task, completed=done))
    meta = {**result.params.to_json(), "kind": "edit", "segakit_version": __version__, **result.metadata}
    meta["captions_before"], meta["captions_after"] = result.captions_before, result.captions_after
    meta["seconds"] = round(time.perf_counter() - start, 2)
    if show:
        typer.echo(f"source caption: {result.source_caption}")
        for c in result.captions_before:
            typer.echo(f"before: {c}")
        for c in result.captions_after:
            typer.echo(f"after: {c}")
    save_png(result.images[0], out, meta)
    typer.echo(str(out))
