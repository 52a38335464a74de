"""``segakit edit IMAGE "INSTRUCTION"``: instruction-guided editing of a real image (Pix2Pix-OnTheFly).

Writes one PNG that carries every parameter (``--from-png`` repeats the edit). Bad input: one sentence, exit 2,
no file written.
"""

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

CAPTIONS_HELP = "A caption of the image {when} the edit, repeatable (skips the {what})."


def edit(
    image: Annotated[
        Path | None, typer.Argument(help="The image to edit (any size or mode: converted as docs/editing.md says).")
    ] = None,
    instruction: Annotated[str | None, typer.Argument(help="What to change, e.g. 'give her glasses'.")] = None,
    model: Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)] = "embedded",
    method: Annotated[
        str | None,
        typer.Option(
            help="U-Net models: onthefly (Pix2Pix-OnTheFly: cross-attention guided; the default) or sega (LEDITS++: SEGA concepts on an edit-friendly inversion). SD3 and FLUX models: flowedit (FlowEdit, no inversion; the default), invert (the captions' edit on a rectified-flow inversion) or sega (SEGA concepts on that inversion). docs/flow.md."
        ),
    ] = None,
    recipe: Annotated[
        str | None,
        typer.Option(
            "--recipe",
            help="The defaults of the options you leave out: measured (the setting that edited best on the editing study's held-out pairs: onthefly on a DDPM inversion with --mask 0.98 --guidance 5; sega with --sega-mask noise --threshold 0.99 --blend; U-Net models' default) or paper (the papers' own: onthefly on a DDIM inversion at guidance 5; LEDITS++'s intersect masks at 0.9; FlowEdit's per family without a mask). On SD3 and FLUX the default is the model's own: the embedded flow model's measured FlowEdit (50 steps, --skip 0.2, guidance 3.5 / 7.5, --mask 0.8), elsewhere the paper's. docs/guide.md, \"Editing defaults\".",
        ),
    ] = None,
    concept: Annotated[
        list[str] | None,
        typer.Option("--concept", help="--method sega: a concept to add (+glasses) or remove (-beard), repeatable."),
    ] = None,
    inversion: Annotated[
        str | None,
        typer.Option(
            help="--method onthefly: ddim (the paper's: DDIM inversion, then cross-attention guided editing) or ddpm (segakit's faster variant: the edit direction sampled on an edit-friendly DDPM inversion, which keeps more of the image; --recipe measured's)."
        ),
    ] = None,
    skip: Annotated[
        float | None,
        typer.Option(
            help="With a DDPM inversion (--method sega, --inversion ddpm): share of the noisiest steps skipped (LEDITS++: 0.15, the default). --method flowedit: share of the schedule FlowEdit leaves out, 1 - its strength (default: the paper's, 0.34 on SD3, 4/28 on FLUX)."
        ),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            help="--method sega: the implicit masks' quantile (LEDITS++: 0.9; --recipe measured: 0.99); on SD3 and FLUX, SEGA's threshold of each concept (0.9)."
        ),
    ] = None,
    mask: Annotated[
        float | None,
        typer.Option(
            help="--inversion ddpm: edit only where the edit direction moves the noise prediction most, this quantile of the latent (LEDITS++'s noise mask; 0: everywhere; 0.98 with --guidance 5 keeps more of the image at 0.90 success or more, docs/editing.md, --recipe measured's; --skip 0 for clothes). On SD3 and FLUX, --method flowedit: each step moves the image only where the two prompts' velocities differ most (default: 0.8 on the embedded flow model, where it kept 3-4 points more of the image at equal success; off elsewhere and with --recipe paper; 0.9 starts to miss edits: docs/results/flow/report.md)."
        ),
    ] = None,
    blend: Annotated[
        bool | None,
        typer.Option(
            "--blend/--no-blend",
            help="--method sega, or --inversion ddpm with --mask: outside the masks of the steps so far, hold the inversion's own latents, so those pixels come back exactly (segakit's addition; keeps more of the image, edits less often: docs/editing.md; --recipe measured blends with --method sega).",
            show_default=False,
        ),
    ] = None,
    blend_dilate: Annotated[
        int,
        typer.Option(
            "--blend-dilate",
            help="With --blend: grow each step's mask by this many latent pixels before it joins the region the edit may change (0..8), so the scattered pixels of noise masks make one region and the edit stays in one piece (with --sega-mask noise: docs/editing.md).",
        ),
    ] = 0,
    source_guidance: Annotated[
        float | None,
        typer.Option(
            "--source-guidance",
            help="--method sega: guidance towards the source caption while inverting and sampling (1, the default: none, the unconditional model as diffusers' LEDITS++ uses it; LEDITS++'s paper: 3.5 while inverting). --method flowedit: the source side's guidance (default: the paper's, 3.5 on SD3, 1.5 on FLUX).",
        ),
    ] = None,
    mask_tokens: Annotated[
        str,
        typer.Option(
            "--mask-tokens",
            help="--method sega: whose attention makes the masks: all (every token after the start token, as LEDITS++'s code and diffusers do) or concept (the concept's own tokens, as its paper words it).",
        ),
    ] = "all",
    sega_mask: Annotated[
        str | None,
        typer.Option(
            "--sega-mask",
            help="--method sega: the masks each concept's guidance goes through: intersect (LEDITS++'s: attention mask and noise mask), attention or noise alone (noise: SEGA's own quantile mask; with --threshold 0.99 --blend it edits more and keeps more of the image than LEDITS++'s defaults on the embedded model, with patchier edits: docs/editing.md; --recipe measured's).",
        ),
    ] = None,
    source_caption: Annotated[
        str | None,
        typer.Option(
            "--source-caption", help="A caption of the image (skips the captioner; the embedded model has its own)."
        ),
    ] = None,
    captions_before: Annotated[
        list[str] | None,
        typer.Option("--captions-before", help=CAPTIONS_HELP.format(when="before", what="caption writer")),
    ] = None,
    captions_after: Annotated[
        list[str] | None,
        typer.Option("--captions-after", help=CAPTIONS_HELP.format(when="after", what="caption writer")),
    ] = None,
    captions: Annotated[
        int, typer.Option("--captions", help="How many captions the caption writer writes per side (1..10).")
    ] = 3,
    show_captions: Annotated[
        bool, typer.Option("--show-captions", help="Print the source caption and the captions before/after.")
    ] = False,
    captioner: Annotated[
        Path | None,
        typer.Option(
            "--captioner",
            help="A local BLIP captioning model folder (safetensors); default on the embedded model: its own small one.",
        ),
    ] = None,
    caption_writer: Annotated[
        Path | None,
        typer.Option(
            "--caption-writer",
            help="A local causal language model folder (safetensors), e.g. Phi-2; default on the embedded model: its own small one.",
        ),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(
            help="Inversion steps = edit steps (the paper: 100; default 25 on U-Nets; SD3 and FLUX: flowedit the paper's 50 / 28, invert and sega 28)."
        ),
    ] = None,
    guidance: Annotated[
        float | None,
        typer.Option(
            help="onthefly: classifier-free guidance of the edit pass (negative: the source caption; default: the recipe's 5, or 3.5 on a DDPM inversion without it); sega: each concept's scale (default 5); flowedit: the target side's guidance (default: the paper's, 13.5 on SD3, 5.5 on FLUX; 7.5 on the embedded flow model); invert: the guidance of inversion and sampling (default 1)."
        ),
    ] = None,
    eta: Annotated[
        float,
        typer.Option(
            help="--method invert: RF-Inversion's pull back towards the image while sampling the edit, 0 (off) to 1 (the image)."
        ),
    ] = 0.0,
    eta_stop: Annotated[
        int | None,
        typer.Option("--eta-stop", help="--method invert: --eta acts on the steps before this one (default: all)."),
    ] = None,
    gamma: Annotated[
        float,
        typer.Option(
            help="--method invert or sega on SD3 and FLUX: RF-Inversion's pull towards a Gaussian sample while inverting, 0 (off) to 1 (more editable, less faithful)."
        ),
    ] = 0.0,
    size: Annotated[
        int | None,
        typer.Option(
            help="SD3 and FLUX: the side in pixels the image is edited at (default: the model's, e.g. 1024 on FLUX.1); U-Nets edit at their own size."
        ),
    ] = None,
    xa_guidance: Annotated[
        float, typer.Option("--xa-guidance", help="Step size of the cross-attention guidance (0 turns it off).")
    ] = 0.15,
    direction_scale: Annotated[
        float, typer.Option("--direction-scale", help="Multiplier of the edit direction.")
    ] = 1.0,
    regularize: Annotated[
        bool, typer.Option("--regularize/--no-regularize", help="pix2pix-zero's noise regularisation during inversion.")
    ] = True,
    seed: Annotated[int, typer.Option(help="Seed (noise regularisation, caption writer).")] = 0,
    then: Annotated[
        list[str] | None,
        typer.Option(
            "--then", help="A further instruction that edits the previous result (multi-turn), repeatable, in order."
        ),
    ] = None,
    then_captions_after: Annotated[
        list[str] | None,
        typer.Option(
            "--then-captions-after",
            help="With --then: the caption after each further turn, one per --then, in order (skips the caption writer).",
        ),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="The output: a .png file, or a folder where it is numbered after the edits already there (edited-000.png, ...); it is the last turn's result and records every turn.",
        ),
    ] = Path("out"),
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing --out file instead of refusing.")
    ] = False,
    from_png: Annotated[
        Path | None, typer.Option("--from-png", help="Repeat the edit stored in a PNG written by segakit edit.")
    ] = None,
    device: Annotated[str | None, typer.Option(help=DEVICE_HELP)] = None,
    threads: Annotated[int | None, typer.Option("--threads", metavar="N", help=THREADS_HELP)] = None,
    quiet: Quiet = False,
) -> None:
    """Edit a real image as an instruction says: caption it, write captions before/after, edit (U-Nets: invert and
    edit with cross-attention guidance or SEGA; SD3 and FLUX: FlowEdit, a rectified-flow inversion or SEGA on it).
    With --then, further instructions edit the previous result in turn."""
    from segakit.core.images import read_params
    from segakit.core.loading import model_family
    from segakit.core.outputs import plan_images
    from segakit.editing.image import file_sha256, read_image
    from segakit.editing.params import UNET_METHODS, EditParams, is_flow

    out = plan_images(out, 1, "edited", overwrite)[0]  # the output policy: checked before anything loads
    pipe = None
    if from_png is not None:
        if image is not None or instruction is not None:
            raise UserError("--from-png takes the image and instruction from the PNG; do not give them again.")
        stored = read_params(from_png)
        params = EditParams.from_json(stored)
        turns = [params] + [EditParams.from_json({**t, "kind": "edit"}) for t in stored.get("turns", [])]
        if not params.image or not Path(params.image).is_file():
            raise UserError(
                f"The source image {params.image!r} recorded in {str(from_png)!r} is no longer there; edit it again by name."
            )
        if params.image_sha256 and file_sha256(params.image) != params.image_sha256:
            raise UserError(
                f"The source image {params.image!r} recorded in {str(from_png)!r} has changed since; edit it again by name."
            )
        image = Path(params.image)
    else:
        if image is None or instruction is None:
            raise UserError(
                "Give an image and an instruction, e.g. segakit edit face.png 'give her glasses' --out glasses.png."
            )
        family = model_family(model)
        if family is None:  # a hub id not on this machine yet: what it is shows once it is loaded
            pipe = load_editor(model, captioner, caption_writer)
            family = pipe.family
        if is_flow(family):
            method = method or "flowedit"
            mask, sega_mask, blend, threshold = _flow_unset(recipe, model, mask, sega_mask, blend, threshold)
            if recipe == "paper":  # the paper's settings for the family, where the model has its own
                steps, skip, guidance, source_guidance, mask = _flow_paper(
                    method, family, steps, skip, guidance, source_guidance, mask
                )
        elif (method := method or "onthefly") in UNET_METHODS:  # another method is refused by name below
            chosen = _recipe_defaults(
                method, recipe or "measured", inversion, mask, guidance, threshold, sega_mask, blend
            )
            inversion, mask, guidance, threshold, sega_mask, blend = chosen
        params = EditParams(
            instruction=instruction, model=model, method=method, inversion=inversion, source_caption=source_caption,
            captions_before=list(captions_before or []), captions_after=list(captions_after or []), num_captions=captions,
            steps=steps, guidance_scale=guidance, xa_guidance=xa_guidance, direction_scale=direction_scale,
            regularize=regularize, seed=seed, concepts=list(concept or []), skip=skip, threshold=threshold,
            source_guidance=source_guidance, mask_tokens=mask_tokens, mask=mask, blend=blend, sega_mask=sega_mask,
            blend_dilate=blend_dilate, eta=eta, eta_stop=eta_stop, gamma=gamma, size=size,
        )  # fmt: skip
        turns = [params] + _further_turns(params, list(then or []), list(then_captions_after or []))
    family = pipe.family if pipe is not None else model_family(params.model)
    for turn in turns:
        turn.validate(family)
    picture = read_image(image)
    params.image, params.image_sha256 = str(Path(image).resolve()), file_sha256(image)
    use_threads(threads)
    dev, dtype = device_and_dtype(device, "fp32")
    run(turns, picture, out, dev, captioner, caption_writer, show_captions, pipe)


def load_editor(model: str, captioner: Path | None, caption_writer: Path | None):
    """The editing pipeline of ``model``: EditPipeline on U-Nets; on SD3 and FLUX, FlowEditPipeline over a
    SegaPipeline (whose sampling loop --method sega runs)."""
    from segakit.editing.pipeline import EditPipeline
    from segakit.sega.pipeline import SegaPipeline

    return EditPipeline.from_pretrained(
        model, captioner=captioner, caption_writer=caption_writer, pipeline_class=SegaPipeline
    )


def _flow_unset(recipe: str | None, model: str, mask, sega_mask, blend, threshold) -> tuple:
    """On SD3 and FLUX the defaults are the model's (the embedded flow model's measured ones, else the papers');
    the U-Net-only options left out take their unused values, so that given ones are refused by name
    (EditParams.validate); a mask left out stays None, the model's own."""
    from segakit.core.embedded_flow import EMBEDDED_FLOW
    from segakit.core.loading import model_key
    from segakit.editing.recipes import RECIPES

    if recipe == "measured" and model_key(model) != EMBEDDED_FLOW:
        raise UserError(
            "--recipe measured is a setting measured on the embedded models; on other SD3 and FLUX models the defaults are the papers' (--recipe paper)."
        )
    if recipe is not None and recipe not in RECIPES:
        raise UserError(f"--recipe {recipe!r} is not one of {', '.join(RECIPES)}.")
    return mask, sega_mask or "intersect", bool(blend), 0.9 if threshold is None else threshold


def _flow_paper(method: str, family: str, steps, skip, guidance, source_guidance, mask) -> tuple:
    """``--recipe paper`` on a flow model: the options left out take the family's published settings (FlowEdit's
    paper: no mask), not the model's own."""
    from segakit.editing.params import flow_defaults

    paper = flow_defaults(method, family)
    pick = lambda given, name: paper[name] if given is None else given  # noqa: E731
    return (pick(steps, "steps"), pick(skip, "skip"), pick(guidance, "guidance_scale"),
            pick(source_guidance, "source_guidance"), pick(mask, "mask"))  # fmt: skip


def _recipe_defaults(method: str, recipe: str, inversion, mask, guidance, threshold, sega_mask, blend) -> tuple:
    """The options left out, from ``--recipe`` (segakit.editing.recipes); a given option always wins. Where the user's
    --inversion is not the recipe's, the mask and guidance are that inversion's own defaults (no mask)."""
    from segakit.editing.params import default_guidance
    from segakit.editing.recipes import recipe as recipe_of

    r = recipe_of(method, recipe)
    inversion = inversion or r.inversion
    ours = method == "sega" or inversion == r.inversion
    mask = mask if mask is not None else (r.mask if ours and method == "onthefly" else 0.0)
    guidance = guidance if guidance is not None else (r.guidance if ours else default_guidance(method, inversion))
    threshold = threshold if threshold is not None else r.threshold
    sega_mask = sega_mask or (r.sega_mask if method == "sega" else "intersect")
    blend = blend if blend is not None else (r.blend if method == "sega" else False)
    return inversion, mask, guidance, threshold, sega_mask, blend


def _further_turns(first, instructions: list[str], after: list[str]) -> list:
    """The --then turns: the first turn's settings, their own instruction (and caption after, when given)."""
    import dataclasses

    if after and len(after) != len(instructions):
        raise UserError(
            f"--then-captions-after was given {len(after)} times for {len(instructions)} --then instructions; give one per --then, or none."
        )
    if not instructions and after:
        raise UserError("--then-captions-after needs --then instructions to go with.")
    turns = []
    for k, text in enumerate(instructions):
        turns.append(dataclasses.replace(first, instruction=text, source_caption=None, captions_before=[],
                                         captions_after=[after[k]] if after else [], concepts=[]))  # fmt: skip
    return turns


STAGES = {
    "onthefly-ddim": ("inverting", "reconstructing", "editing"),
    "onthefly-ddpm": ("inverting", "editing"),
    "sega": ("inverting", "editing"),
    "flowedit": ("editing",),
    "invert": ("inverting", "editing"),
}


def stage_of(turn, done: int) -> str:
    """The stage of ``turn`` after ``done`` denoiser steps: the editing chain's names (before the first step, the
    captions are being made: captioning, writing captions)."""
    key = f"onthefly-{turn.inversion}" if turn.method == "onthefly" else turn.method
    names = STAGES[key]
    return names[min(done // max(turn.steps, 1), len(names) - 1)]


def run(turns: list, picture, out: Path, device: str, captioner: Path | None, caption_writer: Path | None, show: bool,
        pipe=None) -> None:  # fmt: skip
    import time

    from segakit import __version__
    from segakit.core.images import save_png
    from segakit.editing.honest import image_change, unchanged_warning
    from segakit.editing.image import fit
    from segakit.editing.turns import run_turns

    with progress_bar(transient=True) as bar:  # loading, then the chain's stages, each named
        task = bar.add_task("loading the model", total=None)
        pipe = (pipe or load_editor(turns[0].model, captioner, caption_writer)).to(device)
        turns = [pipe.resolve(t) for t in turns]  # this model's defaults, as the PNG records them
        start = time.perf_counter()
        sizes = [pipe.total_steps(t) for t in turns]
        first = turns[0]
        needs_caption = not (first.source_caption or first.captions_before)
        needs_writer = first.method != "sega" and not first.captions_after
        opening = " and ".join(
            n for n, on in (("captioning", needs_caption), ("writing captions", needs_writer)) if on
        ) or stage_of(first, 0)
        bar.update(task, description=opening, total=sum(sizes), completed=0)
        prefix = (lambda k: f"turn {k + 1}/{len(turns)}: ") if len(turns) > 1 else (lambda k: "")

        def step(k: int, done: int, total: int) -> None:
            label = prefix(k) + stage_of(turns[k], done)
            if done >= total and k + 1 < len(turns):
                label = prefix(k + 1) + "captioning and writing captions"
            bar.update(task, completed=sum(sizes[:k]) + done, description=label)

        results = run_turns(pipe, turns, picture, callback=step)
    records = []
    for k, result in enumerate(results):
        meta = {**result.params.to_json(), **result.metadata}
        meta["captions_before"], meta["captions_after"] = result.captions_before, result.captions_after
        records.append(meta)
        if show:
            prefix_k = f"turn {k + 1}: " if len(results) > 1 else ""
            typer.echo(f"{prefix_k}source caption: {result.source_caption}")
            for c in result.captions_before:
                typer.echo(f"{prefix_k}before: {c}")
            for c in result.captions_after:
                typer.echo(f"{prefix_k}after: {c}")
    meta = {**records[0], "kind": "edit", "segakit_version": __version__}
    if len(records) > 1:
        meta["turns"] = [{k: v for k, v in r.items() if k not in ("image", "image_sha256")} for r in records[1:]]
    meta["seconds"] = round(time.perf_counter() - start, 2)
    # honest results: an edit that changed (almost) nothing says so, here and in the PNG
    edited = results[-1].images[0]  # at the size the model edited (a U-Net's own; SD3 and FLUX: --size)
    warning = unchanged_warning(image_change(fit(picture, edited.width), edited), turns[-1].method)
    if warning is not None:
        meta["warnings"] = [warning]
    save_png(results[-1].images[0], out, meta)
    if warning is not None:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(str(out))
