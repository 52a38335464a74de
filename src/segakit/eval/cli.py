"""`segakit eval ...`: the measurements that back segakit's claims, judged by the faces world's oracle."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from segakit.errors import UserError

eval_app = typer.Typer(help="Measurements on the faces world (oracle-judged).", no_args_is_help=True)


@eval_app.command("embedded")
def embedded(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for report.json and report.md.")] = Path("out/eval-embedded"),
    model: Annotated[str, typer.Option("--model", "-m", help="'embedded' or a diffusers folder.")] = "embedded",
    steps: Annotated[int, typer.Option(help="DDIM steps.")] = 25,
    prompts: Annotated[int, typer.Option(help="Prompts for text faithfulness.")] = 100,
    prompt_seeds: Annotated[int, typer.Option("--prompt-seeds", help="Seeds per prompt.")] = 4,
    prior_seeds: Annotated[int, typer.Option("--prior-seeds", help="Seeds of the neutral prompt for prior fidelity.")] = 500,
    fid_n: Annotated[int, typer.Option("--fid-n", help="Images per side of the Frechet distance.")] = 2000,
    sega_seeds: Annotated[int, typer.Option("--sega-seeds", help="Seeds lacking each target, per target.")] = 50,
    batch: Annotated[int, typer.Option(help="Images per pipeline call.")] = 16,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
) -> None:
    """The embedded model's quality table: faithfulness, prior fidelity, Frechet distance, SEGA success."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from segakit.eval.embedded_quality import QualityConfig, run_all, total_images, write_report
    from segakit.models import load_pipeline
    from segakit.world.oracle import Oracle

    for name, value in (("--steps", steps), ("--prompts", prompts), ("--prompt-seeds", prompt_seeds),
                        ("--prior-seeds", prior_seeds), ("--sega-seeds", sega_seeds), ("--batch", batch)):  # fmt: skip
        if value < 1:
            raise UserError(f"{name} {value} is below 1; use 1 or more.")
    if fid_n < 2:
        raise UserError(f"--fid-n {fid_n} is below 2; a covariance needs at least 2 images per side.")
    cfg = QualityConfig(steps=steps, n_prompts=prompts, prompt_seeds=prompt_seeds, prior_seeds=prior_seeds,
                        fid_n=fid_n, sega_seeds=sega_seeds, sega_scan=max(12 * sega_seeds, 24), batch=batch)  # fmt: skip
    pipe = load_pipeline(model).to(device)
    pipe.set_progress_bar_config(disable=True)
    oracle = Oracle.load(device=device)
    with Progress(TextColumn("eval"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  disable=not sys.stderr.isatty()) as bar:  # fmt: skip
        task = bar.add_task("images", total=total_images(cfg))
        report = run_all(pipe, oracle, cfg, progress=lambda k: bar.advance(task, k))
    command = "segakit eval embedded " + " ".join(shlex.quote(a) for a in sys.argv[3:]) if len(sys.argv) > 3 else "segakit eval embedded"
    for path in write_report(report, out, command.strip()):
        typer.echo(str(path))
