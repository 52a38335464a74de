"""Training data straight from the faces world: sample ``i`` of a seed is rendered on demand (~1.5 ms).

Every recipe reads the world through :func:`batch_at`, so a run's data is fixed by ``(seed, index)`` and a
resumed run continues exactly where it stopped. Seed 0 is the training seed of the embedded model;
evaluations use other seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from segakit.world.dataset import samples

TRAIN_SEED = 0
PREVIEW_SEED = 999  # fixed held-out samples for reconstruction / sample grids


@dataclass
class Batch:
    images: torch.Tensor  # (N, 3, 64, 64) float in [-1, 1]
    captions: list[str]
    labels: list[dict]
    next_index: int  # the world index after the last sample read


def to_tensor(images: list[Image.Image]) -> torch.Tensor:
    """PIL RGB images -> (N, 3, H, W) float tensor in [-1, 1]."""
    arr = np.stack([np.asarray(im.convert("RGB"), dtype=np.uint8) for im in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_pil(x: torch.Tensor) -> list[Image.Image]:
    """(N, 3, H, W) in [-1, 1] -> PIL images."""
    arr = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a) for a in arr]


def batch_at(seed: int, start: int, n: int, need_caption: bool = False) -> Batch:
    """``n`` world samples from index ``start`` on; with ``need_caption`` empty captions are skipped."""
    images, captions, labels = [], [], []
    index = start
    while len(images) < n:
        chunk = n - len(images) if not need_caption else max(8, (n - len(images)) * 5 // 4)
        for s in samples(chunk, seed, index):
            index += 1
            if need_caption and not s.caption.strip():
                continue
            images.append(s.image)
            captions.append(s.caption)
            labels.append(s.face.labels())
            if len(images) == n:
                break
    return Batch(to_tensor(images), captions, labels, index)


def grid(images: list[Image.Image], cols: int, scale: int = 2) -> Image.Image:
    """Tile images into a grid (nearest-neighbour upscaled by ``scale`` for viewing)."""
    w, h = images[0].size
    rows = (len(images) + cols - 1) // cols
    out = Image.new("RGB", (cols * w, rows * h), (255, 255, 255))
    for i, im in enumerate(images):
        out.paste(im, ((i % cols) * w, (i // cols) * h))
    return out.resize((out.width * scale, out.height * scale), Image.NEAREST) if scale != 1 else out
