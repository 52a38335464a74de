"""Streaming datasets of the faces world: sample ``i`` of seed ``s`` depends only on ``(s, i)``.

>>> from segakit.world.dataset import samples
>>> for s in samples(4, seed=0):
...     s.image, s.face.labels(), s.caption
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segakit.core.atomic import atomic_append, atomic_open, ensure_writable_dir
from segakit.core.errors import UserError
from segakit.world.captions import caption
from segakit.world.render import render
from segakit.world.schema import Face, sample_face

# Separate random streams for samples and edit pairs of the same seed.
SAMPLE_STREAM = 0
PAIR_STREAM = 1


@dataclass
class Sample:
    image: Image.Image
    face: Face
    caption: str


def check_count(n: int, seed: int, start: int = 0) -> None:
    """UserError unless ``n >= 1``, ``seed >= 0`` and ``start >= 0``."""
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise UserError(f"--n must be at least 1, got {n}.")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"--seed must be a non-negative integer, got {seed}.")
    if not isinstance(start, (int, np.integer)) or start < 0:
        raise UserError(f"--start must be a non-negative integer, got {start}.")


def rng_for(seed: int, index: int, stream: int = SAMPLE_STREAM) -> np.random.Generator:
    """The generator of item ``index`` of ``seed`` (independent of every other item)."""
    return np.random.default_rng([int(seed), int(index), int(stream)])


def sample_at(seed: int, index: int, fixed: Mapping[str, Any] | None = None) -> Sample:
    rng = rng_for(seed, index)
    face = sample_face(rng, fixed)
    return Sample(image=render(face), face=face, caption=caption(face, rng))


def samples(n: int, seed: int, start: int = 0, fixed: Mapping[str, Any] | None = None) -> Iterator[Sample]:
    """Yield samples ``start .. start+n-1`` of ``seed`` one at a time (nothing is kept)."""
    check_count(n, seed, start)
    for i in range(start, start + n):
        yield sample_at(seed, i, fixed)


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def file_name(index: int, width: int, suffix: str = "") -> str:
    return f"{index:0{width}d}{suffix}.png"


SAMPLE_PATTERN = r"^(\d+)\.png$"  # the numbered files of a sample folder


def record_field(line: bytes, key: str):
    """``key`` of one JSON Lines record (None for a line that is not a JSON object)."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record.get(key) if isinstance(record, dict) else None


def name_width(start: int, n: int) -> int:
    return max(6, len(str(start + n - 1)))


def write_samples(
    out: Path | str,
    n: int,
    seed: int,
    start: int = 0,
    fixed: Mapping[str, Any] | None = None,
    on_item: Callable[[int], None] | None = None,
) -> Path:
    """Write ``n`` PNGs and ``labels.jsonl`` (file, caption, every attribute, nuisance) to ``out``; streams.

    ``labels.jsonl`` keeps the records already there (but those of the files written again) and gets the new ones
    appended. Where the numbering starts is the caller's choice (``segakit world sample`` continues after the
    highest number there: :func:`segakit.core.outputs.plan_series`).
    """
    check_count(n, seed, start)
    sample_face(rng_for(seed, start), fixed)  # validates ``fixed`` before anything is written
    out = ensure_writable_dir(Path(out))
    width = name_width(start, n)
    labels = out / "labels.jsonl"
    names = {file_name(start + i, width) for i in range(n)}
    with atomic_append(
        labels, keep=lambda line: record_field(line, "file") not in names
    ) as fh:  # appended, never rewritten
        for i, s in enumerate(samples(n, seed, start, fixed)):
            name = file_name(start + i, width)
            with atomic_open(out / name, "wb") as img_fh:
                img_fh.write(png_bytes(s.image))
            record = {"file": name, "caption": s.caption, **s.face.labels(), "nuisance": s.face.nuisance()}
            fh.write((json.dumps(record) + "\n").encode())
            if on_item:
                on_item(i + 1)
    return labels
