"""The study's pairs and results as MagicBrush lays out its data, so MagicBrush's own scripts can read them.

``DIR/magicbrush/<protocol>/`` (protocol: ``single-turn`` or ``multi-turn``):

- ``images/<id>/<id>-input.png``, ``<id>-output<k>.png`` (the gold image after turn k) and ``<id>-mask<k>.png``
  (white where the gold input and output of turn k differ: the world's exact edit region, where MagicBrush's
  annotators painted one);
- ``edit_sessions.json``: ``{id: [{"input": ..., "mask": ..., "output": ..., "instruction": ...}, ...]}``, one entry
  per turn, turn k's input being turn k-1's output;
- ``global_descriptions.json``: ``{id: {file name: caption}}``, the gold caption of every image.

The methods' results go to ``DIR/results/<method>/<protocol>/<id>/<id>-output<k>.png`` beside them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from segakit.core.atomic import atomic_open, ensure_writable_dir
from segakit.eval.editing_study.items import Turn, image_of


def _png(path: Path, image: Image.Image) -> str:
    with atomic_open(path, "wb") as fh:
        image.save(fh, format="PNG")
    return path.name


def edit_mask(a: Image.Image, b: Image.Image) -> Image.Image:
    """White (255) where the two images differ in any channel, black elsewhere (mode L)."""
    diff = np.any(np.asarray(a.convert("RGB")) != np.asarray(b.convert("RGB")), axis=-1)
    return Image.fromarray((diff * 255).astype(np.uint8), mode="L")


def item_id(turn: Turn) -> str:
    return turn.item.split("-", 1)[1]


def write_magicbrush(folder: Path, items: list[list[Turn]]) -> Path:
    """The gold side: ``items`` are sessions (a single-turn pair is a session of one turn). Returns the folder."""
    folder = ensure_writable_dir(Path(folder))
    sessions: dict[str, list[dict]] = {}
    captions: dict[str, dict[str, str]] = {}
    for turns in items:
        key = item_id(turns[0])
        d = ensure_writable_dir(folder / "images" / key)
        entries, described = [], {}
        previous = _png(d / f"{key}-input.png", turns[0].input_image)
        described[previous] = turns[0].source_caption
        for t in turns:
            mask = _png(d / f"{key}-mask{t.step}.png", edit_mask(t.input_image, t.target_image))
            output = _png(d / f"{key}-output{t.step}.png", t.target_image)
            entries.append({"input": previous, "mask": mask, "output": output, "instruction": t.instruction})
            described[output] = t.target_caption
            previous = output
        sessions[key], captions[key] = entries, described
    for name, data in (("edit_sessions.json", sessions), ("global_descriptions.json", captions)):
        with atomic_open(folder / name, "w") as fh:
            json.dump(data, fh, indent=1)
    return folder


def write_results(folder: Path, images: dict, method: str, protocol: str, items: list[list[Turn]]) -> None:
    """One method's results in MagicBrush's layout (``<id>/<id>-output<k>.png``)."""
    for turns in items:
        key = item_id(turns[0])
        for t in turns:
            u8 = images.get((method, t.item, t.step))
            if u8 is not None:
                d = ensure_writable_dir(Path(folder) / method / protocol / key)
                _png(d / f"{key}-output{t.step}.png", image_of(u8))
