"""Figures for docs/world.md: a contact sheet with captions, one row per attribute, edit pairs, augmentation.

    segakit world sheet --out docs/img --overwrite

Thumbnails are the real 64x64 renders, enlarged with nearest-neighbour so every pixel shows.
"""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image

from segakit.world.dataset import samples
from segakit.world.pairs import pairs
from segakit.world.render import render
from segakit.world.schema import ATTRIBUTES, Face, sample_face


def _save(fig, path: Path) -> Path:
    from segakit.core.atomic import atomic_open

    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def contact_sheet(path: Path, seed: int = 0, rows: int = 4, cols: int = 6) -> Path:
    """Renders of ``samples(rows*cols, seed)`` with their captions."""
    plt = _plt()
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.3, rows * 2.75))
    for ax, s in zip(axes.flat, samples(rows * cols, seed)):
        ax.imshow(np.asarray(s.image), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        text = s.caption if s.caption else "(empty caption)"
        ax.set_xlabel("\n".join(textwrap.wrap(text, 30)[:4]), fontsize=7)
    fig.suptitle(f"segakit world sample --n {rows * cols} --seed {seed}", fontsize=10)
    fig.tight_layout()
    path = _save(fig, path)
    plt.close(fig)
    return path


def base_face(seed: int = 3) -> Face:
    """A plain face to vary attributes on: no accessories, short brown hair, neutral."""
    face = sample_face(np.random.default_rng(seed))
    return dataclasses.replace(
        face,
        presentation="woman",
        skin="medium-light",
        hair_style="short",
        hair_color="brown",
        bangs=False,
        glasses=False,
        expression="neutral",
        beard=False,
        hat=False,
        makeup=False,
        role="none",
        horror=False,
        rotation=0.0,
        head_dx=0.0,
        head_dy=0.0,
        head_scale=1.0,
    )


def attribute_rows(path: Path, seed: int = 3) -> Path:
    """One row per attribute: the same face with each value of that attribute."""
    plt = _plt()
    base = base_face(seed)
    width = max(len(v) for v in ATTRIBUTES.values())
    fig, axes = plt.subplots(len(ATTRIBUTES), width, figsize=(width * 1.35, len(ATTRIBUTES) * 1.45))
    for r, (attr, values) in enumerate(ATTRIBUTES.items()):
        for c in range(width):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(values):
                ax.axis("off")
                continue
            face = dataclasses.replace(base, **{attr: values[c]})
            if attr == "beard":
                face = dataclasses.replace(face, presentation="man")
            if attr == "hair_color":
                face = dataclasses.replace(face, hair_style="long")
            ax.imshow(np.asarray(render(face)), interpolation="nearest")
            label = str(values[c]).lower() if isinstance(values[c], bool) else values[c]
            ax.set_title(label, fontsize=8)
            if c == 0:
                ax.set_ylabel(attr, fontsize=9)
    fig.suptitle("one attribute changed at a time (segakit world sheet)", fontsize=10)
    fig.tight_layout()
    path = _save(fig, path)
    plt.close(fig)
    return path


def pair_sheet(path: Path, seed: int = 0, n: int = 8) -> Path:
    """Edit pairs: source, target, instruction."""
    plt = _plt()
    fig, axes = plt.subplots(2, n, figsize=(n * 1.9, 4.6))
    for k, p in enumerate(pairs(n, seed)):
        for r, img in enumerate((p.source_image, p.target_image)):
            ax = axes[r, k]
            ax.imshow(np.asarray(img), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, k].set_title("\n".join(textwrap.wrap(p.instruction, 22)[:3]), fontsize=7)
    axes[0, 0].set_ylabel("source", fontsize=9)
    axes[1, 0].set_ylabel("target", fontsize=9)
    fig.suptitle(f"segakit world pairs --n {n} --seed {seed}", fontsize=10)
    fig.tight_layout()
    path = _save(fig, path)
    plt.close(fig)
    return path


def augment_sheet(path: Path, seed: int = 0, n: int = 8) -> Path:
    """Renders (top) and the same renders after the oracle's training augmentation (bottom)."""
    import torch

    from segakit.world.oracle import augment, to_tensor

    plt = _plt()
    imgs = [s.image for s in samples(n, seed)]
    x = to_tensor(imgs)
    xa = augment(x, torch.Generator().manual_seed(seed))
    fig, axes = plt.subplots(2, n, figsize=(n * 1.5, 3.3))
    for k in range(n):
        for r, t in enumerate((x, xa)):
            ax = axes[r, k]
            ax.imshow((t[k].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("render", fontsize=9)
    axes[1, 0].set_ylabel("augmented", fontsize=9)
    fig.tight_layout()
    path = _save(fig, path)
    plt.close(fig)
    return path


FIGURES = ("world-contact-sheet.png", "world-attributes.png", "world-pairs.png", "world-augment.png")


def all_figures(out: Path, seed: int = 0) -> list[Path]:
    out = Path(out)
    return [
        contact_sheet(out / FIGURES[0], seed),
        attribute_rows(out / FIGURES[1]),
        pair_sheet(out / FIGURES[2], seed),
        augment_sheet(out / FIGURES[3], seed),
    ]


def mosaic(images: list[Image.Image], cols: int) -> Image.Image:
    rows = (len(images) + cols - 1) // cols
    out = Image.new("RGB", (cols * 64, rows * 64), (255, 255, 255))
    for i, im in enumerate(images):
        out.paste(im, ((i % cols) * 64, (i // cols) * 64))
    return out
