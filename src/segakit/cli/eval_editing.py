"""`segakit eval editing`, `eval captioner`, `eval caption-writer`: the editing studies and their parts."""

from __future__ import annotations

import dataclasses
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from segakit.cli.eval_shared import REPORT_FILES, _runner, eval_app  # noqa: F401
from segakit.cli.options import DEVICE_HELP, Quiet, progress_bar, resolve_device
from segakit.cli.runners import RAY_HELP, WORKERS_HELP, check
from segakit.core.errors import UserError
from segakit.core.outputs import plan_file, plan_folder


@eval_app.command("editing")
def editing(
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Folder for report.md, report.json, figures, MagicBrush-format files and cache/."
        ),
    ] = Path("out/eval-editing"),
    pairs: Annotated[int, typer.Option(help="Single-change world pairs (single-turn protocol).")] = 24,
    attributes: Annotated[
        str,
        typer.Option(
            "--attributes",
            help="Comma-separated: only the single-change pairs that change one of these attributes (the same pairs as without it, the others left out; default: all).",
        ),
    ] = "",
    sessions: Annotated[int, typer.Option(help="Multi-turn sessions (0 = skip the multi-turn protocol).")] = 4,
    turns: Annotated[
        int, typer.Option(help="Instructions per session, each editing the previous result (MagicBrush: 3).")
    ] = 3,
    steps: Annotated[
        int | None,
        typer.Option(
            help="Inversion steps = edit steps, every method (the paper: 100). Default: each method's own: 25 on U-Net models; on SD3 and FLUX the flow editors' (FlowEdit the paper's per family, SD3 50 with the last 33 edited; rf-inversion, sega-flow, regenerate 28 each way)."
        ),
    ] = None,
    methods: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated methods. U-Net models: onthefly-gold, onthefly-lm, onthefly-gold-ddpm, onthefly-lm-ddpm, sega, ledits-diffusers, regenerate (the default), and onthefly-auto-ddpm (captions the image itself: the whole chain). SD3 and FLUX models (e.g. embedded-flow): flowedit-gold, flowedit-lm, rf-inversion-gold, rf-inversion-lm, sega-flow, regenerate (the default: all of them)."
        ),
    ] = None,
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="'embedded', 'embedded-flow' (the flow methods) or a diffusers folder (an SD3 or FLUX one: the flow methods), with clip/ beside it for CLIP-I / CLIP-T (embedded-flow: the embedded model's CLIP).",
        ),
    ] = "embedded",
    caption_writer: Annotated[
        Path | None,
        typer.Option(
            "--caption-writer",
            help="A local causal LM folder for onthefly-lm (default: the embedded model's own caption writer, when it ships).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="The world's seed of the pairs and sessions.")] = 0,
    edit_seed: Annotated[int, typer.Option("--edit-seed", help="The methods' seed.")] = 0,
    guidance: Annotated[
        float, typer.Option(help="OnTheFly: classifier-free guidance of the edit pass (the paper: 5).")
    ] = 5.0,
    xa_guidance: Annotated[
        float,
        typer.Option("--xa-guidance", help="OnTheFly: step size of the cross-attention guidance (the paper: 0.15)."),
    ] = 0.15,
    ddpm_guidance: Annotated[
        float,
        typer.Option(
            "--ddpm-guidance",
            help="OnTheFly on a DDPM inversion (the -ddpm methods): guidance of the edit (segakit edit --inversion ddpm: 3.5).",
        ),
    ] = 3.5,
    ddpm_mask: Annotated[
        float,
        typer.Option(
            "--ddpm-mask",
            help="OnTheFly on a DDPM inversion: edit only where the direction's change reaches this quantile (segakit edit --mask; 0: everywhere).",
        ),
    ] = 0.0,
    skip: Annotated[
        float,
        typer.Option(
            help="Share of the noisiest steps the edit-friendly DDPM inversion skips (SEGA, the peer, the -ddpm methods; LEDITS++: 0.15)."
        ),
    ] = 0.15,
    sega_scale: Annotated[
        float,
        typer.Option(
            "--sega-scale", help="Edit scale of SEGA (sega, sega-flow) and of diffusers' LEDITS++ (LEDITS++: 5)."
        ),
    ] = 5.0,
    sega_threshold: Annotated[
        float,
        typer.Option(
            "--sega-threshold",
            help="Mask quantile of SEGA (sega, sega-flow) and of diffusers' LEDITS++ (LEDITS++: 0.9).",
        ),
    ] = 0.9,
    source_guidance: Annotated[
        float,
        typer.Option(
            "--sega-source-guidance",
            help="segakit SEGA: guidance towards the source caption while inverting and sampling (1: none, as the peer).",
        ),
    ] = 1.0,
    mask_tokens: Annotated[
        str,
        typer.Option(
            "--sega-mask-tokens",
            help="segakit SEGA: whose attention makes the masks: all (LEDITS++'s code, diffusers) or concept (its paper).",
        ),
    ] = "all",
    sega_mask: Annotated[
        str,
        typer.Option(
            "--sega-mask",
            help="segakit SEGA and diffusers' LEDITS++: intersect (LEDITS++'s default), attention or noise alone (SEGA's own; the peer with use_intersect_mask=False).",
        ),
    ] = "intersect",
    blend: Annotated[
        bool,
        typer.Option(
            "--blend",
            help="segakit SEGA and the -ddpm methods with --ddpm-mask: outside the masks of the steps so far, hold the inversion's latents (segakit edit --blend).",
        ),
    ] = False,
    blend_dilate: Annotated[
        int,
        typer.Option(
            "--blend-dilate",
            help="With --blend: grow each step's mask by this many latent pixels (segakit edit --blend-dilate).",
        ),
    ] = 0,
    figure_rows: Annotated[int, typer.Option("--figure-rows", help="Pairs shown in the figure.")] = 6,
    cache: Annotated[
        Path | None, typer.Option("--cache", help="Folder of the cached edits (default: DIR/cache).")
    ] = None,
    threads: Annotated[
        int, typer.Option(help="CPU threads for torch (0: torch's default; with --workers or --ray: 1 per worker).")
    ] = 0,
    workers: Annotated[int | None, typer.Option("--workers", "-w", help=WORKERS_HELP)] = None,
    ray: Annotated[str | None, typer.Option("--ray", help=RAY_HELP)] = None,
    device: Annotated[str | None, typer.Option(help=DEVICE_HELP)] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the report already in --out (the cache is reused either way).")
    ] = False,
    quiet: Quiet = False,
) -> None:
    """Instruction-guided editing on faces-world pairs in MagicBrush's format: MagicBrush's metrics and the oracle's,
    OnTheFly, SEGA, diffusers' LEDITS++ and regeneration side by side (on SD3 and FLUX models: FlowEdit, the
    rectified-flow inversion, SEGA on it and regeneration), single- and multi-turn. Resumes from the cache."""
    device = resolve_device(device)
    plan_folder(out, "--out", REPORT_FILES, overwrite)  # a finished report is never replaced unasked
    import warnings

    from segakit.core.loading import model_family
    from segakit.editing.pipeline import EditPipeline
    from segakit.eval.editing_study import (
        UNET_STEPS,
        ClipScorer,
        EditingStudy,
        EditingStudyConfig,
        Methods,
        default_methods,
        kind_of,
        write_report,
    )
    from segakit.sega.pipeline import SegaPipeline
    from segakit.world.oracle import Oracle

    if threads < 0:
        raise UserError(f"--threads {threads} is below 0; use 0 for torch's default or a positive count.")
    family = model_family(model)  # from model_index.json, before any weights load (None: known once loaded)
    chosen = tuple(m.strip() for m in methods.split(",") if m.strip()) if methods is not None else None
    cfg = EditingStudyConfig(pairs=pairs, attributes=tuple(a.strip() for a in attributes.split(",") if a.strip()), sessions=sessions, turns=turns, seed=seed, edit_seed=edit_seed,
                             steps=UNET_STEPS if steps is None and kind_of(family) == "unet" else steps,  # as before on U-Nets
                             guidance=guidance, xa_guidance=xa_guidance, ddpm_guidance=ddpm_guidance, ddpm_mask=ddpm_mask, skip=skip, methods=default_methods(family) if chosen is None else chosen, sega_scale=sega_scale,
                             sega_threshold=sega_threshold, source_guidance=source_guidance, mask_tokens=mask_tokens,
                             sega_mask=sega_mask, blend=blend, blend_dilate=blend_dilate, figure_rows=figure_rows).check(family)  # fmt: skip
    check(workers, ray)
    if threads:
        import torch

        torch.set_num_threads(threads)
    warnings.filterwarnings("ignore", message=".*torchvision.*")
    # the embedded model brings its own caption writer; a flow model is edited over SegaPipeline (sega-flow runs its loop)
    loading = {"pipeline_class": SegaPipeline} if kind_of(family) != "unet" else {}
    pipe = EditPipeline.from_pretrained(model, caption_writer=caption_writer, **loading).to(device)
    if chosen is None and family is None:  # the model's family is known only now
        cfg = dataclasses.replace(cfg, methods=default_methods(getattr(pipe, "family", "unet")))
    clip_folder = _model_clip_folder(model)
    clip = ClipScorer.from_folder(clip_folder) if clip_folder is not None else None
    oracle = Oracle.load(device=device)
    command = (
        "segakit eval editing " + " ".join(shlex.quote(a) for a in sys.argv[3:])
        if len(sys.argv) > 3
        else "segakit eval editing"
    )
    with (
        _runner(workers, ray, model, device, threads) as runner,
        progress_bar("{task.description:<36}", transient=False, elapsed=True) as bar,
    ):
        task = bar.add_task("editing", total=None)
        study = EditingStudy(Methods(pipe, cfg), oracle, clip, cfg, cache or out / "cache", runner=runner, model_name=model,
                             caption_writer=caption_writer, progress=lambda name: bar.update(task, description=name, advance=1))  # fmt: skip
        result = study.run()
    for path in write_report(result, out, command.strip(), model):
        typer.echo(str(path))


def _model_clip_folder(model: str) -> Path | None:
    """The CLIP beside the model (``clip/`` in its folder); for the embedded flow model, which ships none, the embedded
    U-Net model's, trained on the same world (so both models' CLIP-I / CLIP-T are measured by one CLIP)."""
    from segakit.core.embedded_flow import EMBEDDED_FLOW
    from segakit.core.loading import embedded_path, model_key, resolve

    folder = Path(embedded_path() if model_key(model) == EMBEDDED_FLOW else resolve(model)) / "clip"
    return folder if (folder / "config.json").is_file() else None


@eval_app.command("captioner")
def captioner(
    model: Annotated[
        Path | None, typer.Option("--model", "-m", help="A BLIP captioner folder (default: the embedded model's).")
    ] = None,
    n: Annotated[int, typer.Option("-n", "--n", help="Held-out world renders to caption.")] = 500,
    seed: Annotated[
        int, typer.Option(help="World seed of the renders (the shipped captioner trains on seed 0 of its own stream).")
    ] = 1,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Also write the summary as JSON here.")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing --out file instead of refusing.")
    ] = False,
    quiet: Quiet = False,
) -> None:
    """How right a captioner is on held-out world renders, read by the world's caption parser."""
    if out is not None:
        plan_file(out, ".json", "--out", overwrite)
    from segakit.eval import captioner as measure

    if n < 1:
        raise UserError(f"-n {n} must be at least 1.")
    argv = (
        ["--n", str(n), "--seed", str(seed)]
        + (["--model", str(model)] if model else [])
        + (["--json", str(out)] if out else [])
    )
    measure.main(argv)


@eval_app.command("caption-writer")
def caption_writer(
    model: Annotated[
        Path | None,
        typer.Option("--model", "-m", help="A causal LM folder (default: the embedded model's caption writer)."),
    ] = None,
    n: Annotated[
        int, typer.Option("-n", "--n", help="Held-out edits (the faces and instructions of `segakit world pairs`).")
    ] = 200,
    captions: Annotated[int, typer.Option("--captions", help="Captions per side (1..10).")] = 3,
    seed: Annotated[int, typer.Option(help="World seed of the edit pairs.")] = 0,
    source: Annotated[str, typer.Option(help="Caption 1 from 'world' captions or the embedded 'captioner'.")] = "world",
    temperature: Annotated[
        float | None,
        typer.Option(help="Sampling temperature (default: the model folder's generation_config.json, else 1)."),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Also write the summary as JSON here.")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing --out file instead of refusing.")
    ] = False,
    quiet: Quiet = False,
) -> None:
    """How often a caption writer's output parses and its after-captions state the instructed change and keep the rest."""
    if out is not None:
        plan_file(out, ".json", "--out", overwrite)
    from segakit.eval import caption_writer as measure

    if n < 1 or not 1 <= captions <= 10:
        raise UserError(f"-n {n} must be at least 1 and --captions {captions} within 1..10.")
    if source not in ("world", "captioner"):
        raise UserError(f"--source {source!r} is not one of world, captioner.")
    if temperature is not None and not temperature > 0:
        raise UserError(f"--temperature {temperature} is not positive; use a number above 0.")
    argv = ["--n", str(n), "--captions", str(captions), "--seed", str(seed), "--source", source]
    argv += ["--temperature", str(temperature)] if temperature is not None else []
    argv += (["--model", str(model)] if model else []) + (["--json", str(out)] if out else [])
    measure.main(argv)
