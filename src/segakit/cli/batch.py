"""``segakit batch JOBS --out DIR``: many generations from a JSON Lines file, here, in local workers, or on Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from segakit.cli.options import DEVICE_HELP, Quiet, device_and_dtype, progress_bar
from segakit.cli.runners import RAY_HELP, check, executor
from segakit.core.errors import UserError

JOBS_HELP = (
    "A JSON Lines file, one job per line with the fields a segakit PNG stores: prompt, seed, steps, model, "
    'edits (CLI edit strings such as "+glasses:s=6" or objects), directions, num_images, ...'
)


def batch(
    jobs: Annotated[Path, typer.Argument(help=JOBS_HELP)],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the PNGs (named by job id) and results.jsonl.")
    ] = Path("out/batch"),
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-w",
            help="Local worker processes (default 1: this process); with --ray, the number of actors (default: the cluster's CPUs).",
        ),
    ] = None,
    ray: Annotated[str | None, typer.Option("--ray", help=RAY_HELP)] = None,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            help="Images per pipeline call (jobs that differ only in prompt and seed share one U-Net batch); 1 runs every job alone.",
        ),
    ] = 8,
    max_unet_rows: Annotated[
        int, typer.Option("--max-unet-rows", help="Memory cap: U-Net rows per call, images x (2 + edits).")
    ] = 64,
    threads: Annotated[
        int,
        typer.Option(
            "--threads",
            help="Torch threads per worker (default 1). The thread count changes the last bits of some images: runs that must match use the same.",
        ),
    ] = 1,
    classify: Annotated[
        bool, typer.Option("--classify", help="Add the faces-world oracle's reading of each image to results.jsonl.")
    ] = False,
    strict: Annotated[bool, typer.Option("--strict", help="If any JOBS line is bad, run nothing.")] = False,
    device: Annotated[str | None, typer.Option(help=DEVICE_HELP)] = None,
    dtype: Annotated[str, typer.Option(help="auto, fp32, fp16 or bf16 (auto: fp16 on GPU, fp32 on CPU).")] = "auto",
    quiet: Quiet = False,
) -> int:
    """Run a file of generation jobs: one PNG per job, results.jsonl, resumable, byte-identical in every mode."""
    from segakit.jobs.jobfile import read_jobs
    from segakit.jobs.runner import run_jobs
    from segakit.jobs.worker import WorkerConfig

    for name, value in (("--batch-size", batch_size), ("--max-unet-rows", max_unet_rows), ("--threads", threads)):
        if value < 1:
            raise UserError(f"{name} {value} is below 1; use 1 or more.")
    check(workers, ray)
    from segakit.core.outputs import plan_folder

    plan_folder(
        out, "--out"
    )  # a folder: job PNGs already there are kept (a rerun resumes), results.jsonl keeps their lines
    dev, torch_dtype = device_and_dtype(device, dtype)
    config = WorkerConfig(
        dev,
        {"torch.float32": "fp32", "torch.float16": "fp16", "torch.bfloat16": "bf16"}[str(torch_dtype)],
        classify,
        threads,
    )
    todo, bad = read_jobs(jobs)
    for error in bad:
        typer.echo(f"error: {error.sentence(jobs.name)}", err=True)
    if bad and strict:
        typer.echo(
            f"error: {len(bad)} bad line{'s' * (len(bad) != 1)} in {jobs.name} and --strict is set; nothing ran.",
            err=True,
        )
        return 2
    with executor(workers, ray, config) as ex, progress_bar("jobs", transient=False, elapsed=True) as bar:
        task = bar.add_task("jobs", total=len(todo))
        summary = run_jobs(todo, out, ex, batch_size, max_unet_rows, classify, progress=lambda k: bar.advance(task, k))
    for job, sentence in summary.failed:
        typer.echo(f"error: {jobs.name} line {job.line}: {sentence}", err=True)
    rate = summary.written / summary.seconds if summary.seconds else 0.0
    typer.echo(f"{summary.written} written, {summary.skipped} already done, {len(summary.failed)} failed, "
               f"{len(bad)} bad lines; {summary.seconds:.1f} s ({rate:.2f} jobs/s); {summary.results}")  # fmt: skip
    return 2 if bad or summary.failed else 0
