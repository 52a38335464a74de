"""The study's figures: rows of images of the same seeds, one row per method (or strength), as PNGs."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from segakit.core.images import grid, save_png


def to_pil(u8: torch.Tensor) -> Image.Image:
    return Image.fromarray(u8.permute(1, 2, 0).numpy())


def rows_figure(rows: list[tuple[str, torch.Tensor]], cols: int = 8) -> Image.Image:
    """``(label, (N, 3, H, W) uint8)`` rows: the first ``cols`` images of each, one row per label."""
    cols = min(cols, *(len(images) for _, images in rows))
    images = [to_pil(images[i]) for _, images in rows for i in range(cols)]
    return grid(images, cols=cols, row_labels=[label for label, _ in rows], scale=max(1, 96 // images[0].size[0]))


def write_figures(figures: dict[str, list], out: Path, meta: dict) -> list[Path]:
    """Each figure as ``out/<name>`` (a PNG carrying ``meta``: the command and the model it was made on)."""
    return [save_png(rows_figure(rows), out / name, {**meta, "figure": name}) for name, rows in sorted(figures.items())]
