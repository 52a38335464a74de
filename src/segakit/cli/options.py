"""Options that several commands share: device and dtype."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from segakit.core.errors import UserError

MODEL_HELP = "'embedded', a hub id, or a local diffusers folder."
DEVICE_HELP = "cpu, cuda, cuda:N or mps (default: cuda if present)."


def resolve_device(device: str | None) -> str:
    """The one default device rule of every command: ``--device`` if given, else cuda when present, else cpu."""
    return device_and_dtype(device, "fp32")[0]


def device_and_dtype(device: str | None, dtype: str):
    """``--device`` (default: cuda when present, else cpu) and ``--dtype`` (auto: fp16 on a GPU, fp32 otherwise)."""
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


QUIET_HELP = "No progress bars (they are also off when stderr is not a terminal)."
_quiet = False


def set_quiet(value: bool) -> bool:
    """``--quiet``: no progress bars for the rest of this command (every long command takes it, :data:`Quiet`)."""
    global _quiet
    _quiet = bool(value)
    return value


# a command that can run longer than a few seconds takes ``quiet: Quiet = False`` (tests/test_output_policy.py checks)
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help=QUIET_HELP, callback=set_quiet, is_eager=True)]


def progress_shown() -> bool:
    """Whether progress bars are drawn: stderr is a terminal and --quiet was not given."""
    return not _quiet and sys.stderr.isatty()


def progress_bar(
    label: str = "[progress.description]{task.description}", *, transient: bool = True, elapsed: bool = False
):
    """A rich progress bar on stderr (bar, done/total, time left; ``elapsed`` adds time spent); silent off a terminal
    and with ``--quiet``."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        *([TimeElapsedColumn()] if elapsed else []),
        TimeRemainingColumn(),
    ]
    return Progress(*columns, transient=transient, disable=not progress_shown(), console=Console(stderr=True))


THREADS_HELP = "CPU threads for torch (default: the cores other processes are not keeping busy; env SEGAKIT_THREADS)."


def use_threads(threads: int | None) -> None:
    """Set torch's thread count for this command: ``--threads``, else what :func:`default_threads` chose at start-up."""
    import os

    from segakit.core.threads import set_threads

    if threads is not None or "OMP_NUM_THREADS" not in os.environ:
        set_threads(threads)


def default_threads(argv: list[str]) -> None:
    """Before torch loads: OMP_NUM_THREADS from SEGAKIT_THREADS or the free cores, unless the user set it (or asks for help)."""
    import os

    from segakit.core.threads import choose_threads

    if "torch" in sys.modules:  # too late for the variable to matter (an in-process caller); use_threads still works
        return
    if "OMP_NUM_THREADS" in os.environ or {"--help", "--version"} & set(argv) or len(argv) < 2:
        return
    try:
        os.environ["OMP_NUM_THREADS"] = str(choose_threads())
    except UserError:  # a bad SEGAKIT_THREADS is reported by the command that uses it
        return


_TYPE_NAMES = {
    "int": "INTEGER",
    "float": "NUMBER",
    "str": "TEXT",
    "path": "PATH",
    "file": "FILE",
    "directory": "FOLDER",
    "bool": "BOOLEAN",
}


def readable_help(command) -> None:
    """Give every option and argument of ``command`` (and its sub-commands) a plain metavar: TEXT, INTEGER,
    NUMBER, PATH, an argument's name in capitals, choices as a|b; where the command set none itself."""
    for param in getattr(command, "params", []):
        if param.param_type_name == "argument":
            param.metavar = param.metavar or (param.name or "value").upper()
            param.display_type_rich = lambda ctx=None: None  # typer adds "<str>" after an argument's name
            continue
        if param.metavar is not None or getattr(param, "is_flag", False) or getattr(param, "count", False):
            continue
        try:
            shown = param.display_type(None)
        except Exception:  # not a typer parameter, or a type it cannot show: leave it
            continue
        inner = shown.strip("<>").removeprefix("list[").removesuffix("]")
        param.metavar = _TYPE_NAMES.get(inner, inner if "|" in inner else inner.upper())
    for sub in getattr(command, "commands", {}).values():
        readable_help(sub)
