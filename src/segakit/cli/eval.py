"""`segakit eval ...`: the measurements that back segakit's claims, judged by the faces world's oracle."""

from __future__ import annotations

import dataclasses
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from segakit.cli.eval_shared import REPORT_FILES, _model_clip, _runner, eval_app  # noqa: F401
from segakit.cli.options import DEVICE_HELP, Quiet, progress_bar, resolve_device
from segakit.cli.runners import RAY_HELP, WORKERS_HELP, check
from segakit.core.errors import UserError
from segakit.core.outputs import plan_folder
from segakit.sega.defaults import edit_defaults

MODEL_DEFAULT = "Default: the model's edit default (segakit.sega.defaults; diffusers' on other models)."


def _model_edit(
    model: str, scale: float | None, threshold: float | None, warmup: int | None
) -> tuple[float, float, int]:
    """The edit flags with those not given taken from the model's edit defaults."""
    d = edit_defaults(model)
    return (d.scale if scale is None else scale, d.threshold if threshold is None else threshold,
            d.warmup if warmup is None else warmup)  # fmt: skip


@eval_app.command("embedded")
def embedded(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for report.json and report.md.")] = Path(
        "out/eval-embedded"
    ),
    model: Annotated[str, typer.Option("--model", "-m", help="'embedded' or a diffusers folder.")] = "embedded",
    steps: Annotated[int, typer.Option(help="Sampler steps (DDIM on the U-Net model, Euler on flow models).")] = 25,
    prompts: Annotated[int, typer.Option(help="Prompts for text faithfulness.")] = 100,
    prompt_seeds: Annotated[int, typer.Option("--prompt-seeds", help="Seeds per prompt.")] = 4,
    prior_seeds: Annotated[
        int, typer.Option("--prior-seeds", help="Seeds of the neutral prompt for prior fidelity.")
    ] = 500,
    fid_n: Annotated[int, typer.Option("--fid-n", help="Images per side of the Frechet distance.")] = 2000,
    sega_seeds: Annotated[int, typer.Option("--sega-seeds", help="Seeds lacking each target, per target.")] = 50,
    batch: Annotated[int, typer.Option(help="Images per pipeline call.")] = 16,
    edit_scale: Annotated[
        float | None, typer.Option("--edit-scale", help=f"SEGA edit scale of the additions. {MODEL_DEFAULT}")
    ] = None,
    edit_threshold: Annotated[
        float | None,
        typer.Option("--edit-threshold", help=f"SEGA threshold (quantile) of the additions. {MODEL_DEFAULT}"),
    ] = None,
    edit_warmup: Annotated[
        int | None, typer.Option("--edit-warmup", help=f"SEGA warm-up steps of the additions. {MODEL_DEFAULT}")
    ] = None,
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
    edit_scale, edit_threshold, edit_warmup = _model_edit(model, edit_scale, edit_threshold, edit_warmup)
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
    steps: Annotated[int, typer.Option(help="Sampler steps (DDIM on the U-Net model, Euler on flow models).")] = 25,
    batch: Annotated[int, typer.Option(help="Images per pipeline call (part of the cache key).")] = 16,
    scale: Annotated[float | None, typer.Option(help=f"SEGA edit scale of every edit. {MODEL_DEFAULT}")] = None,
    threshold: Annotated[
        float | None, typer.Option(help=f"SEGA threshold (quantile of |guidance| kept). {MODEL_DEFAULT}")
    ] = None,
    warmup: Annotated[int | None, typer.Option(help=f"First step at which an edit acts. {MODEL_DEFAULT}")] = None,
    edit_refresh: Annotated[
        int,
        typer.Option(
            "--edit-refresh", help="Compute each concept every K steps, reuse its direction in between (1: exact SEGA)."
        ),
    ] = 1,
    guidance_refresh: Annotated[
        int,
        typer.Option(
            "--guidance-refresh", help="Compute the unconditional estimate every K steps, reuse its offset (1: exact)."
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
    scale, threshold, warmup = _model_edit(model, scale, threshold, warmup)
    cfg = StudyConfig(seeds=seeds, first_seed=first_seed, steps=steps, batch=batch, scale=scale, threshold=threshold, edit_refresh=edit_refresh, guidance_refresh=guidance_refresh,
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
        Path | None,
        typer.Option(
            "--library",
            help="Direction library folder (default: the one shipped for the embedded or embedded-flow model).",
        ),
    ] = None,
    strength: Annotated[
        float | None, typer.Option(help="Strength of the library's directions (default: the library's).")
    ] = None,
    steps: Annotated[int, typer.Option(help="Sampler steps (DDIM on the U-Net model, Euler on flow models).")] = 25,
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
    from segakit.directions.library import Library, library_folder
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
    lib = Library.load(library_folder(library, model, "segakit eval directions needs"))
    if threads:
        import torch

        torch.set_num_threads(threads)
    pipe = SegaPipeline.from_pretrained(model).to(device)
    pipe.set_progress_bar_config(disable=True)
    lib.check_model(pipe.family.denoiser)
    if pipe.family.flow:  # diffusers' SLD pipeline (StableDiffusionPipelineSafe) is Stable Diffusion's
        cfg = dataclasses.replace(cfg, sld=False)
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


from segakit.cli import eval_editing  # noqa: E402,F401  (registers eval editing, captioner, caption-writer)
