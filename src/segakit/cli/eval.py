"""`segakit eval ...`: the measurements that back segakit's claims, judged by the faces world's oracle."""

from __future__ import annotations

import contextlib
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from segakit.cli.options import DEVICE_HELP, Quiet, progress_bar, resolve_device
from segakit.cli.runners import RAY_HELP, WORKERS_HELP, check, executor, wants_workers
from segakit.core.errors import UserError
from segakit.core.outputs import plan_file, plan_folder
from segakit.sega.defaults import EMBEDDED_EDIT

eval_app = typer.Typer(help="Measurements on the faces world (oracle-judged).", no_args_is_help=True)


REPORT_FILES = ("report.md", "report.json")  # what every study writes into --out; refused there unless --overwrite


def _model_clip(model: str):
    """The CLIPModel shipped beside a model (``clip/`` in its folder), or None."""
    import torch
    from transformers import CLIPModel

    from segakit.core.loading import resolve

    folder = Path(resolve(model)) / "clip"
    if not (folder / "config.json").is_file():
        return None
    return CLIPModel.from_pretrained(folder, dtype=torch.float32, use_safetensors=True).eval()


@eval_app.command("embedded")
def embedded(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for report.json and report.md.")] = Path(
        "out/eval-embedded"
    ),
    model: Annotated[str, typer.Option("--model", "-m", help="'embedded' or a diffusers folder.")] = "embedded",
    steps: Annotated[int, typer.Option(help="DDIM steps.")] = 25,
    prompts: Annotated[int, typer.Option(help="Prompts for text faithfulness.")] = 100,
    prompt_seeds: Annotated[int, typer.Option("--prompt-seeds", help="Seeds per prompt.")] = 4,
    prior_seeds: Annotated[
        int, typer.Option("--prior-seeds", help="Seeds of the neutral prompt for prior fidelity.")
    ] = 500,
    fid_n: Annotated[int, typer.Option("--fid-n", help="Images per side of the Frechet distance.")] = 2000,
    sega_seeds: Annotated[int, typer.Option("--sega-seeds", help="Seeds lacking each target, per target.")] = 50,
    batch: Annotated[int, typer.Option(help="Images per pipeline call.")] = 16,
    edit_scale: Annotated[
        float, typer.Option("--edit-scale", help="SEGA edit scale of the additions.")
    ] = EMBEDDED_EDIT.scale,
    edit_threshold: Annotated[
        float, typer.Option("--edit-threshold", help="SEGA threshold (quantile) of the additions.")
    ] = EMBEDDED_EDIT.threshold,
    edit_warmup: Annotated[
        int, typer.Option("--edit-warmup", help="SEGA warm-up steps of the additions.")
    ] = EMBEDDED_EDIT.warmup,
    guidance_sweep: Annotated[
        str,
        typer.Option(
            "--guidance-sweep",
            help="Comma-separated guidance scales at which text faithfulness is measured again ('' = none).",
        ),
    ] = "3,15",
    te_captions: Annotated[
        int,
        typer.Option(
            "--te-captions", help="World captions for the text encoder's separation (0 = skip the text-side columns)."
        ),
    ] = 3000,
    te_images: Annotated[
        int,
        typer.Option(
            "--te-images", help="Renders for the CLIP's zero-shot accuracy (needs clip/ in the model folder)."
        ),
    ] = 600,
    guidance_refresh: Annotated[
        int,
        typer.Option(
            "--guidance-refresh", help="Compute the unconditional estimate every K steps, reuse its offset (1: exact)."
        ),
    ] = 1,
    device: Annotated[str | None, typer.Option(help=DEVICE_HELP)] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the report already in --out (the cache is reused either way).")
    ] = False,
    quiet: Quiet = False,
) -> None:
    """The embedded model's quality table: faithfulness (across guidance), prior fidelity, Frechet distance, SEGA
    success, and per attribute what the text encoder separates and the CLIP reads."""
    device = resolve_device(device)
    plan_folder(out, "--out", REPORT_FILES, overwrite)  # a finished report is never replaced unasked
    from segakit.core.fingerprint import pipeline_fingerprint
    from segakit.eval.embedded_quality import (
        QualityConfig,
        run_all,
        total_images,
        write_report,
    )
    from segakit.sega.guidance import Edit
    from segakit.sega.pipeline import SegaPipeline
    from segakit.world.oracle import Oracle

    for name, value in (("--steps", steps), ("--prompts", prompts), ("--prompt-seeds", prompt_seeds),
                        ("--prior-seeds", prior_seeds), ("--sega-seeds", sega_seeds), ("--batch", batch),
                        ("--guidance-refresh", guidance_refresh)):  # fmt: skip
        if value < 1:
            raise UserError(f"{name} {value} is below 1; use 1 or more.")
    if fid_n < 2:
        raise UserError(f"--fid-n {fid_n} is below 2; a covariance needs at least 2 images per side.")
    if edit_warmup < 0 or edit_warmup >= steps:
        raise UserError(
            f"--edit-warmup {edit_warmup} is outside 0..{steps - 1}; the edit must start before the last step."
        )
    try:
        sweep = tuple(float(g) for g in guidance_sweep.split(",") if g.strip())
    except ValueError:
        raise UserError(
            f"--guidance-sweep {guidance_sweep!r} is not a comma-separated list of numbers, e.g. 3,15."
        ) from None
    if any(g < 1 for g in sweep):
        raise UserError(
            f"--guidance-sweep {guidance_sweep!r} has a scale below 1; classifier-free guidance scales are 1 or more."
        )
    if te_captions < 0 or te_images < 0:
        raise UserError(f"--te-captions {te_captions} / --te-images {te_images}: use 0 or more.")
    edit = Edit(scale=edit_scale, threshold=edit_threshold, warmup=edit_warmup)
    cfg = QualityConfig(steps=steps, n_prompts=prompts, prompt_seeds=prompt_seeds, prior_seeds=prior_seeds,
                        fid_n=fid_n, sega_seeds=sega_seeds, sega_scan=max(12 * sega_seeds, 24), batch=batch, edit=edit,
                        guidance_sweep=sweep, te_captions=te_captions, te_images=te_images,
                        guidance_refresh=guidance_refresh)  # fmt: skip
    pipe = SegaPipeline.from_pretrained(model).to(device)
    clip = _model_clip(model) if te_captions and te_images else None
    pipe.set_progress_bar_config(disable=True)
    oracle = Oracle.load(device=device)
    with progress_bar("eval", transient=False) as bar:
        task = bar.add_task("images", total=total_images(cfg))
        figures: dict = {}
        report = run_all(pipe, oracle, cfg, progress=lambda k: bar.advance(task, k), figures=figures, clip=clip)
    report = {"model": {"name": model, "fingerprint": pipeline_fingerprint(pipe)}, **report}
    command = (
        "segakit eval embedded " + " ".join(shlex.quote(a) for a in sys.argv[3:])
        if len(sys.argv) > 3
        else "segakit eval embedded"
    )
    for path in write_report(report, out, command.strip(), figures):
        typer.echo(str(path))


@eval_app.command("sega")
def sega(
    seeds: Annotated[int, typer.Option(help="Seeds of the neutral prompt (the paper judged 250 faces).")] = 250,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for report.md, report.json, figures and cache/.")
    ] = Path("out/eval-sega"),
    model: Annotated[
        str, typer.Option("--model", "-m", help="'embedded' or a diffusers folder or hub id.")
    ] = "embedded",
    steps: Annotated[int, typer.Option(help="DDIM steps.")] = 25,
    batch: Annotated[int, typer.Option(help="Images per pipeline call (part of the cache key).")] = 16,
    scale: Annotated[float, typer.Option(help="SEGA edit scale of every edit.")] = EMBEDDED_EDIT.scale,
    threshold: Annotated[
        float, typer.Option(help="SEGA threshold (quantile of |guidance| kept).")
    ] = EMBEDDED_EDIT.threshold,
    warmup: Annotated[int, typer.Option(help="First step at which an edit acts.")] = EMBEDDED_EDIT.warmup,
    edit_refresh: Annotated[
        int,
        typer.Option(
            "--edit-refresh", help="Compute each concept every K steps, reuse its direction in between (1: exact SEGA)."
        ),
    ] = 1,
    target_scale: Annotated[
        list[str] | None,
        typer.Option("--target-scale", help="Per-target scale, repeatable: NAME=SCALE, e.g. 'bald=9'."),
    ] = None,
    sweep_seeds: Annotated[
        int, typer.Option("--sweep-seeds", help="Seeds per target in the scale sweep (monotonicity).")
    ] = 20,
    unique_seeds: Annotated[int, typer.Option("--unique-seeds", help="Seeds of the uniqueness test.")] = 50,
    first_seed: Annotated[int, typer.Option("--first-seed", help="The first of the N seeds.")] = 0,
    oracle_path: Annotated[
        Path | None, typer.Option("--oracle", help="Oracle weights (.safetensors); default: the shipped ones.")
    ] = None,
    device: Annotated[str | None, typer.Option(help=DEVICE_HELP)] = None,
    threads: Annotated[
        int, typer.Option(help="CPU threads for torch (default: all cores; with --workers or --ray: 1 per worker).")
    ] = 0,
    workers: Annotated[int | None, typer.Option("--workers", "-w", help=WORKERS_HELP)] = None,
    ray: Annotated[str | None, typer.Option("--ray", help=RAY_HELP)] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the report already in --out (the cache is reused either way).")
    ] = False,
    quiet: Quiet = False,
) -> None:
    """SEGA's face-attribute study with a prompt-rewrite baseline; resumes from DIR/cache."""
    device = resolve_device(device)
    plan_folder(out, "--out", REPORT_FILES, overwrite)  # a finished report is never replaced unasked
    from segakit.eval.sega_study import StudyConfig, StudyProgress, run_study
    from segakit.sega.pipeline import SegaPipeline
    from segakit.world.oracle import Oracle

    overrides = []
    for item in target_scale or []:
        name, sep, value = item.rpartition("=")
        try:
            overrides.append((name.strip(), float(value)))
        except ValueError:
            raise UserError(f"--target-scale {item!r} is not NAME=SCALE, such as 'bald=9'.") from None
        if not sep:
            raise UserError(f"--target-scale {item!r} is not NAME=SCALE, such as 'bald=9'.")
    if threads < 0:
        raise UserError(f"--threads {threads} is below 0; use 0 for all cores or a positive count.")
    check(workers, ray)
    cfg = StudyConfig(seeds=seeds, first_seed=first_seed, steps=steps, batch=batch, scale=scale, threshold=threshold, edit_refresh=edit_refresh,
                      warmup=warmup, target_scales=tuple(overrides), sweep_seeds=sweep_seeds, unique_seeds=unique_seeds).check()  # fmt: skip
    if threads:
        import torch

        torch.set_num_threads(threads)
    pipe = SegaPipeline.from_pretrained(model).to(device)
    pipe.set_progress_bar_config(disable=True)
    oracle = Oracle.load(oracle_path, device=device)

    class Bar(StudyProgress):
        def __init__(self, bar) -> None:
            self.bar, self.task = bar, bar.add_task("plain", total=None)

        def total(self, images: int) -> None:
            self.bar.update(self.task, total=images)

        def unit(self, name: str) -> None:
            self.bar.update(self.task, description=name)

        def advance(self, images: int) -> None:
            self.bar.advance(self.task, images)

    command = (
        "segakit eval sega " + " ".join(shlex.quote(a) for a in sys.argv[3:])
        if len(sys.argv) > 3
        else "segakit eval sega"
    )
    with (
        _runner(workers, ray, model, device, threads) as runner,
        progress_bar("{task.description:<22}", transient=False, elapsed=True) as bar,
    ):
        _, paths = run_study(pipe, oracle, cfg, out, command.strip(), Bar(bar), model_name=model, runner=runner)
    for path in paths:
        typer.echo(str(path))


@eval_app.command("directions")
def directions(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for report.md, report.json, figures and cache/.")
    ] = Path("out/eval-directions"),
    seeds: Annotated[int, typer.Option(help="Seeds per prompt (the issue: 200).")] = 200,
    model: Annotated[
        str, typer.Option("--model", "-m", help="'embedded' or a diffusers folder or hub id.")
    ] = "embedded",
    library: Annotated[
        Path | None, typer.Option("--library", help="Direction library folder (default: the embedded model's).")
    ] = None,
    strength: Annotated[
        float | None, typer.Option(help="Strength of the library's directions (default: the library's).")
    ] = None,
    steps: Annotated[int, typer.Option(help="DDIM steps.")] = 25,
    batch: Annotated[int, typer.Option(help="Images per pipeline call.")] = 16,
    sweep_seeds: Annotated[
        int, typer.Option("--sweep-seeds", help="Seeds per strength in the monotonicity sweep.")
    ] = 50,
    timing_repeats: Annotated[
        int, typer.Option("--timing-repeats", help="Interleaved timings of plain vs a direction (median).")
    ] = 3,
    first_seed: Annotated[int, typer.Option("--first-seed", help="The first seed.")] = 0,
    sections: Annotated[
        str, typer.Option(help="Comma-separated sections to run.")
    ] = "fairness,safety,enhance,monotonicity,composition,cost",
    cache: Annotated[
        Path | None, typer.Option("--cache", help="Folder of the cached images (default: DIR/cache).")
    ] = None,
    device: Annotated[str | None, typer.Option(help=DEVICE_HELP)] = None,
    threads: Annotated[
        int, typer.Option(help="CPU threads for torch (default: all cores; with --workers or --ray: 1 per worker).")
    ] = 0,
    workers: Annotated[int | None, typer.Option("--workers", "-w", help=WORKERS_HELP)] = None,
    ray: Annotated[str | None, typer.Option("--ray", help=RAY_HELP)] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the report already in --out (the cache is reused either way).")
    ] = False,
    quiet: Quiet = False,
) -> None:
    """Self-discovered directions against Fair Diffusion, Safe Latent Diffusion, negative prompts and SEGA reverse
    edits: fairness, safety, text-enhancing, monotonicity, composition, cost. Resumes from DIR/cache."""
    device = resolve_device(device)
    plan_folder(out, "--out", REPORT_FILES, overwrite)  # a finished report is never replaced unasked
    from segakit.directions.library import Library
    from segakit.eval.directions_study import (
        DirectionsStudyConfig,
        Progress,
        run_study,
        total_images,
    )
    from segakit.sega.pipeline import SegaPipeline
    from segakit.world.oracle import Oracle

    if threads < 0:
        raise UserError(f"--threads {threads} is below 0; use 0 for all cores or a positive count.")
    check(workers, ray)
    cfg = DirectionsStudyConfig(seeds=seeds, first_seed=first_seed, steps=steps, batch=batch, strength=strength, sweep_seeds=sweep_seeds,
                                timing_repeats=timing_repeats, sections=tuple(s.strip() for s in sections.split(",") if s.strip())).check()  # fmt: skip
    lib = Library.load(library)
    if threads:
        import torch

        torch.set_num_threads(threads)
    pipe = SegaPipeline.from_pretrained(model).to(device)
    pipe.set_progress_bar_config(disable=True)
    lib.check_model(pipe.unet)
    oracle = Oracle.load(device=device)

    class Bar(Progress):
        def __init__(self, bar) -> None:
            self.bar, self.task = bar, bar.add_task("directions", total=total_images(cfg))

        def unit(self, name: str) -> None:
            self.bar.update(self.task, description=name)

        def advance(self, images: int) -> None:
            self.bar.advance(self.task, images)

    command = (
        "segakit eval directions " + " ".join(shlex.quote(a) for a in sys.argv[3:])
        if len(sys.argv) > 3
        else "segakit eval directions"
    )
    with (
        _runner(workers, ray, model, device, threads) as runner,
        progress_bar("{task.description:<28}", transient=False, elapsed=True) as bar,
    ):
        _, paths = run_study(
            pipe, oracle, lib, cfg, out, command.strip(), Bar(bar), model_name=model, cache=cache, runner=runner
        )
    for path in paths:
        typer.echo(str(path))


@contextlib.contextmanager
def _runner(workers: int | None, ray: str | None, model: str, device: str, threads: int) -> Iterator:
    """A CallRunner on the workers the options ask for (``threads`` torch threads each, default 1), or None: this process."""
    if not wants_workers(workers, ray):
        yield None
        return
    from segakit.jobs.calls import CallRunner
    from segakit.jobs.worker import WorkerConfig

    with executor(workers, ray, WorkerConfig(device, "fp32", False, threads or 1)) as ex:
        yield CallRunner(ex, model)


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
    steps: Annotated[int, typer.Option(help="Inversion steps = edit steps, every method (the paper: 100).")] = 25,
    methods: Annotated[
        str,
        typer.Option(
            help="Comma-separated methods: onthefly-gold, onthefly-lm, onthefly-gold-ddpm, onthefly-lm-ddpm, sega, ledits-diffusers, regenerate; also onthefly-auto-ddpm (captions the image itself: the whole chain)."
        ),
    ] = "onthefly-gold,onthefly-lm,onthefly-gold-ddpm,onthefly-lm-ddpm,sega,ledits-diffusers,regenerate",
    model: Annotated[
        str, typer.Option("--model", "-m", help="'embedded' or a diffusers folder with clip/ beside it.")
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
        float, typer.Option("--sega-scale", help="Edit scale of SEGA and of diffusers' LEDITS++ (LEDITS++: 5).")
    ] = 5.0,
    sega_threshold: Annotated[
        float,
        typer.Option("--sega-threshold", help="Mask quantile of SEGA and of diffusers' LEDITS++ (LEDITS++: 0.9)."),
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
    OnTheFly, SEGA, diffusers' LEDITS++ and regeneration side by side, single- and multi-turn. Resumes from the cache."""
    device = resolve_device(device)
    plan_folder(out, "--out", REPORT_FILES, overwrite)  # a finished report is never replaced unasked
    import warnings

    from segakit.editing.pipeline import EditPipeline
    from segakit.eval.editing_study import (
        ClipScorer,
        EditingStudy,
        EditingStudyConfig,
        Methods,
        write_report,
    )
    from segakit.world.oracle import Oracle

    if threads < 0:
        raise UserError(f"--threads {threads} is below 0; use 0 for torch's default or a positive count.")
    cfg = EditingStudyConfig(pairs=pairs, attributes=tuple(a.strip() for a in attributes.split(",") if a.strip()), sessions=sessions, turns=turns, seed=seed, edit_seed=edit_seed, steps=steps,
                             guidance=guidance, xa_guidance=xa_guidance, ddpm_guidance=ddpm_guidance, ddpm_mask=ddpm_mask, skip=skip, methods=tuple(m.strip() for m in methods.split(",") if m.strip()), sega_scale=sega_scale,
                             sega_threshold=sega_threshold, source_guidance=source_guidance, mask_tokens=mask_tokens,
                             sega_mask=sega_mask, blend=blend, blend_dilate=blend_dilate, figure_rows=figure_rows).check()  # fmt: skip
    check(workers, ray)
    if threads:
        import torch

        torch.set_num_threads(threads)
    warnings.filterwarnings("ignore", message=".*torchvision.*")
    pipe = EditPipeline.from_pretrained(model, caption_writer=caption_writer).to(
        device
    )  # the embedded model brings its own
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
    from segakit.core.loading import resolve

    folder = Path(resolve(model)) / "clip"
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
