"""Recipe configs from the command line: every dataclass field becomes a ``--field value`` flag.

nanoGPT style: the defaults at the top of each recipe are the real run; a test or a GPU run overrides
a few fields (``--max_steps 3 --device cuda``). Tuples are written comma-separated (``--block_out_channels 32,64,64``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import typing
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

C = TypeVar("C")


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _tuple_of(kind: type):
    def parse(text: str) -> tuple:
        return tuple(kind(p) for p in text.split(",") if p.strip())

    return parse


def parse_config(cls: type[C], argv: list[str] | None = None, description: str | None = None) -> C:
    """Build ``cls`` from its defaults overridden by ``--field value`` flags in ``argv``."""
    parser = argparse.ArgumentParser(description=description or cls.__doc__)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        origin = typing.get_origin(hint)
        if hint is bool:
            kind: Any = _parse_bool
        elif origin is tuple:
            kind = _tuple_of(typing.get_args(hint)[0])
        elif hint in (int, float, str):
            kind = hint
        else:
            kind = str
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        parser.add_argument(f"--{f.name}", type=kind, default=default, help=f"(default: {default})")
    return cls(**vars(parser.parse_args(argv)))


def config_dict(cfg: Any) -> dict[str, Any]:
    """JSON-ready dict of a config dataclass (tuples as lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def setup_torch(device: str, threads: int) -> torch.device:
    """Thread count (0 = torch's default) and device; ``cuda`` must exist if asked for."""
    if threads > 0:
        torch.set_num_threads(threads)
    if device not in ("cpu", "cuda"):
        raise SystemExit(f"--device must be cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for but torch sees no CUDA device; use --device cpu.")
    return torch.device(device)


def runs_root() -> Path:
    """Where training runs live: ``$SEGAKIT_RUNS`` or ``runs/embedded`` (git-ignored)."""
    return Path(os.environ.get("SEGAKIT_RUNS", "runs/embedded"))


def vae_path(root: Path) -> Path:
    """The autoencoder to decode with: the fine-tuned decoder if that stage ran, else the autoencoder."""
    decoder = root / "decoder" / "final"
    return decoder if decoder.is_dir() else root / "autoencoder" / "final"


def text_encoder_done(root: Path) -> bool:
    """Has the text-encoder stage (``train/text_encoder.py``, issue 15) run to its last step under ``root``?"""
    info = root / "text_encoder" / "model" / "training.json"
    if not info.is_file():
        return False
    state = json.loads(info.read_text())
    return state["step"] >= state["max_steps"]


def clip_path(root: Path) -> Path:
    """The CLIP the later stages use: the text-encoder stage's once it has finished, else the clip stage's."""
    return root / "text_encoder" / "model" / "clip" if text_encoder_done(root) else root / "clip" / "final"


def text_encoder_path(root: Path) -> Path:
    """The text encoder the cache and the U-Net use: the text-encoder stage's once finished, else the clip stage's."""
    return (
        root / "text_encoder" / "model" / "text_encoder" if text_encoder_done(root) else root / "clip" / "text_encoder"
    )


def lr_at(
    step: int, base: float, warmup: int, max_steps: int, schedule: str, min_ratio: float = 0.1, decay_steps: int = 0
) -> float:
    """Linear warm-up, then constant (``const``), cosine decay to ``min_ratio * base`` (``cosine``), or constant
    and then a linear decay to ``min_ratio * base`` over the last ``decay_steps`` steps (``wsd``: warm-up, stable,
    decay; a run can be prolonged or cooled down late without changing its earlier steps)."""
    if step < warmup:
        return base * (step + 1) / warmup
    if schedule == "const":
        return base
    if schedule == "wsd":
        start = max_steps - decay_steps
        if step < start:
            return base
        return base * (1 - (1 - min_ratio) * min(1.0, (step - start) / max(1, decay_steps)))
    progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + np.cos(np.pi * progress)))
