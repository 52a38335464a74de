"""``segakit generate``: SEGA generation, strength sweeps, regeneration from a PNG."""

from __future__ import annotations

import re
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
from segakit.cli.preflight import guidance_beside_png, preflight
from segakit.core.errors import UserError

EDIT_HELP = (
    "An edit concept, repeatable: [+|-]CONCEPT[:KEY=VALUE,...]. '+' adds, '-' removes. Keys: scale (s), "
    "threshold (t), warmup (w), cooldown (c, 'none' for never), weight (wt). Example: '+glasses:s=6,t=0.95,w=5'."
)


DIRECTION_HELP = (
    "A self-discovered h-space direction, repeatable: FILE[:STRENGTH] (a .safetensors file from "
    "'segakit directions learn'; strength 1 if not given). Example: woman.safetensors:1.5."
)


FAIR_HELP = (
    "Fair generation over an attribute's values, one drawn per image: ATTRIBUTE or ATTRIBUTE=VALUE:SHARE,... "
    "(e.g. presentation, or skin=light:0.5,dark:0.5); each PNG records the value drawn."
)


def _whole(text: str) -> int | str:
    """``text`` as a whole number when it is one; otherwise as written (the parameters' check names it)."""
    try:
        return int(text)
    except ValueError:
        return text


def _parse_sweep(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--sweep {text!r} is not a comma-separated list of scales, such as 0,2,4,6,8.") from None


LORA_HELP = "A LoRA file (.safetensors), repeatable: FILE or FILE:SCALE (default scale 1), e.g. style.safetensors:0.8."
EMBEDDING_HELP = "A textual-inversion embedding (.safetensors), repeatable; write its token in the prompt or an edit."


def _parse_lora(spec: str):
    """``FILE`` or ``FILE:SCALE`` to a LoraWeights."""
    from segakit.jobs.generate import LoraWeights

    head, sep, tail = spec.rpartition(":")
    if not sep or not Path(head).suffix:
        return LoraWeights(spec, 1.0)
    try:
        return LoraWeights(head, float(tail))
    except ValueError:
        raise UserError(
            f"--lora {spec!r}: scale {tail!r} is not a number; write FILE or FILE:SCALE, e.g. style.safetensors:0.8."
        ) from None


def generate(
    prompt: Annotated[str | None, typer.Argument(help="The text prompt.")] = None,
    model: Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)] = "embedded",
    edit: Annotated[list[str] | None, typer.Option("--edit", "-e", help=EDIT_HELP)] = None,
    direction: Annotated[list[str] | None, typer.Option("--direction", "-d", help=DIRECTION_HELP)] = None,
    fair: Annotated[str | None, typer.Option("--fair", help=FAIR_HELP)] = None,
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="How --fair balances: 'directions' (the library's h-space directions) or 'sega' (Fair Diffusion: SEGA edits +VALUE -OTHERS).",
        ),
    ] = "directions",
    safe: Annotated[bool, typer.Option("--safe", help="Add the direction library's anti-horror direction.")] = False,
    enhance: Annotated[
        bool, typer.Option("--enhance", help="Add the library's direction for every attribute value the prompt names.")
    ] = False,
    fair_draw: Annotated[
        str,
        typer.Option(
            "--fair-draw",
            help="How --fair draws each image's value from its seed: spread (the shares come out as asked over consecutive seeds: 12/12 of 24) or random (each seed on its own, as segakit drew before the spread draw; PNGs written then repeat it).",
        ),
    ] = "spread",
    library: Annotated[
        Path | None,
        typer.Option(
            "--library",
            help="Direction library folder for --fair/--safe/--enhance (default: the one shipped for the embedded or embedded-flow model).",
        ),
    ] = None,
    library_strength: Annotated[
        float | None,
        typer.Option("--library-strength", help="Strength of the library's directions (default: the library's)."),
    ] = None,
    negative: Annotated[str | None, typer.Option("--negative", help="Negative prompt.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the first image; image i uses seed + i.")] = 0,
    num_images: Annotated[
        int,
        typer.Option(
            "--num-images",
            "-n",
            "--n",
            metavar="N",
            help="Number of images (generated 8 at a time, each written when done).",
        ),
    ] = 1,
    steps: Annotated[
        int | None,
        typer.Option(help="Denoising steps (default: 25 on the embedded model, which is tuned at 25; 50 otherwise)."),
    ] = None,
    guidance: Annotated[
        float | None,
        typer.Option(
            help="Guidance scale (the family's default: 7.5 SD, 5.0 SDXL, 7.0 SD3, 3.5 FLUX's distilled guidance)."
        ),
    ] = None,
    true_cfg: Annotated[
        float,
        typer.Option(
            "--true-cfg",
            metavar="SCALE",
            help="FLUX: classifier-free guidance against --negative (diffusers' true_cfg_scale; 1: off; e.g. 4, which doubles the transformer's work).",
        ),
    ] = 1.0,
    height: Annotated[int | None, typer.Option(help="Image height in pixels (default: the model's).")] = None,
    width: Annotated[int | None, typer.Option(help="Image width in pixels (default: the model's).")] = None,
    momentum: Annotated[float, typer.Option(help="SEGA momentum scale s_m.")] = 0.1,
    momentum_beta: Annotated[float, typer.Option("--momentum-beta", help="SEGA momentum beta_m, in [0, 1).")] = 0.4,
    quantile_over: Annotated[
        str, typer.Option("--quantile-over", help="'channel' (diffusers) or 'image' (one quantile per image).")
    ] = "channel",
    edit_refresh: Annotated[
        str,
        typer.Option(
            "--edit-refresh",
            metavar="K|auto",
            help="Compute each concept every K steps and reuse its direction in between (1: exact SEGA; auto: K from --steps).",
        ),
    ] = "1",
    guidance_refresh: Annotated[
        int,
        typer.Option(
            "--guidance-refresh",
            help="Compute the unconditional estimate every K steps and reuse its offset in between (1: exact CFG).",
        ),
    ] = 1,
    sweep: Annotated[
        str | None, typer.Option(help="Render the single --edit at these scales side by side, e.g. 0,2,4,6,8.")
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="A .png file, or a folder (images numbered after those already there).")
    ] = Path("out"),
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace existing files (--out, --save-guidance) instead of refusing.")
    ] = False,
    from_png: Annotated[
        Path | None, typer.Option("--from-png", help="Regenerate from the parameters stored in a segakit PNG.")
    ] = None,
    save_guidance: Annotated[
        Path | None, typer.Option("--save-guidance", help="Record the edits' guidance to this .safetensors file.")
    ] = None,
    apply_guidance: Annotated[
        Path | None, typer.Option("--apply-guidance", help="Add a recorded guidance file at every step.")
    ] = None,
    lora: Annotated[list[str] | None, typer.Option("--lora", help=LORA_HELP)] = None,
    embedding: Annotated[list[Path] | None, typer.Option("--embedding", help=EMBEDDING_HELP)] = None,
    device: Annotated[str | None, typer.Option(help=DEVICE_HELP)] = None,
    dtype: Annotated[str, typer.Option(help="auto, fp32, fp16 or bf16 (auto: fp16 on GPU, fp32 on CPU).")] = "auto",
    threads: Annotated[int | None, typer.Option("--threads", metavar="N", help=THREADS_HELP)] = None,
    quiet: Quiet = False,
) -> None:
    """Generate images with SEGA semantic guidance and write PNGs that carry every parameter."""
    from segakit.core.images import read_params
    from segakit.jobs.generate import GenerationParams, run
    from segakit.sega.defaults import default_steps
    from segakit.sega.editspec import parse_edit

    if from_png is not None:
        if prompt is not None or edit or lora or embedding:
            raise UserError(
                "--from-png takes the prompt, edits, LoRAs and embeddings from the PNG; do not give them again."
            )
        params = guidance_beside_png(GenerationParams.from_json(read_params(from_png)), from_png)
    else:
        if prompt is None:
            raise UserError("No prompt given; write one, e.g. segakit generate 'a face of a person' --edit +glasses.")
        params = GenerationParams(
            prompt=prompt, model=model, edits=[parse_edit(s) for s in edit or []], negative_prompt=negative,
            seed=seed, num_images=num_images, steps=default_steps(model) if steps is None else steps, guidance=guidance, true_cfg=true_cfg, height=height, width=width,
            momentum_scale=momentum, momentum_beta=momentum_beta, quantile_over=quantile_over, edit_refresh=edit_refresh if edit_refresh.strip() == "auto" else _whole(edit_refresh), guidance_refresh=guidance_refresh,
            sweep=_parse_sweep(sweep), apply_guidance=str(apply_guidance) if apply_guidance else None,
            directions=list(direction or []), fair=fair, fair_method=method, fair_draw=fair_draw, safe=safe, enhance=enhance,
            library=str(library) if library else None, library_strength=library_strength,
            loras=[_parse_lora(s) for s in lora or []], embeddings=[str(p) for p in embedding or []],
        )  # fmt: skip
    params.validate()
    use_threads(threads)
    dev, torch_dtype = device_and_dtype(device, dtype)
    plan = preflight(params, out, save_guidance, overwrite, dev, torch_dtype, from_png=from_png is not None)
    for line in plan.warnings:
        typer.echo(f"warning: {line}", err=True)

    frames = len(params.sweep) if params.sweep else -(-params.num_images // plan.chunk)  # pipeline calls
    said: list[str] = []
    with progress_bar() as bar:
        task = bar.add_task("denoising", total=params.steps * frames)
        written = run(params, out, device=dev, dtype=torch_dtype, progress=lambda k: bar.advance(task, k),
                      save_guidance=save_guidance, paths=plan.paths, chunk=plan.chunk, warn=said.append)  # fmt: skip
    for line in said:  # honest results: a concept that never acted (the PNGs record it too), unless said already
        named = re.findall(r"'[+-][^']*'", line)
        if not any("never act" in w and all(n in w for n in named) for w in plan.warnings):
            typer.echo(f"warning: {line}", err=True)
    for path in written:
        typer.echo(str(path))
