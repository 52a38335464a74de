"""Helpers for tests of the command line: run ``segakit ...`` in-process, and a small model folder to run it on."""

import sys
from pathlib import Path

from diffusers import StableDiffusionPipeline
from tiny_models import sd_components

from segakit.cli import main


def cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """``segakit ARGS`` as the console script runs it: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["segakit", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def sd_folder(tmp: Path) -> Path:
    """A diffusers folder of small random SD 1.x components (``tmp/sd``), as a user's ``--model PATH``."""
    pipe = StableDiffusionPipeline(
        **sd_components(tmp / "parts"), safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipe.save_pretrained(tmp / "sd", safe_serialization=True)
    return tmp / "sd"
