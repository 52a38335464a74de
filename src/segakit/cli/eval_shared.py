"""What the `segakit eval` commands share: the command group, the report files, the workers, the model's CLIP."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import typer

from segakit.cli.runners import executor, wants_workers

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
