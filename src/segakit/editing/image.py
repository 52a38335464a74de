"""Input images for editing: read, checked, converted to the model's size, encoded to latents.

Policy (documented in docs/editing.md):

- a file PIL cannot read is refused;
- images wider or taller than :data:`MAX_SIDE` pixels are refused (decompression bombs, and nothing that large
  survives the resize anyway);
- any mode is converted to RGB: transparency is composited on white, grey and palette images are expanded;
- a non-square image is centre-cropped to a square, then resized (Lanczos) to the model's resolution.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from segakit.core.errors import UserError

MAX_SIDE = 8192


def read_image(path: str | Path) -> Image.Image:
    """The image at ``path``, checked for size, fully loaded."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"Image {str(path)!r} does not exist.")
    try:
        with Image.open(p) as im:
            size = im.size
            if max(size) <= MAX_SIDE:
                im.load()
                return im.copy()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError, ValueError):
        raise UserError(f"{str(path)!r} is not an image that Pillow can read (PNG, JPEG, WebP, ...).") from None
    raise UserError(
        f"Image {str(path)!r} is {size[0]}x{size[1]} pixels; segakit edits images up to {MAX_SIDE} pixels a side."
    )


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def to_rgb(image: Image.Image) -> Image.Image:
    """Any mode to RGB; transparency over white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def fit(image: Image.Image, size: int) -> Image.Image:
    """RGB, centre-cropped to a square, resized to ``size`` x ``size``."""
    if max(image.size) > MAX_SIDE:
        raise UserError(
            f"The image is {image.size[0]}x{image.size[1]} pixels; segakit edits images up to {MAX_SIDE} pixels a side."
        )
    image = to_rgb(image)
    w, h = image.size
    side = min(w, h)
    if w != h:
        left, top = (w - side) // 2, (h - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if side != size:
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    return image


def to_tensor(image: Image.Image) -> torch.Tensor:
    """(1, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1)[None] / 127.5 - 1


@torch.no_grad()
def encode(vae, image: Image.Image) -> torch.Tensor:
    """The scaled latent of ``image`` (the mean of the posterior, as LEDITS++ and the round-trip helpers take it)."""
    x = to_tensor(image).to(vae.device, vae.dtype)
    return vae.encode(x).latent_dist.mode() * vae.config.scaling_factor


@torch.no_grad()
def decode(vae, latents: torch.Tensor) -> list[Image.Image]:
    x = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample.float().clamp(-1, 1)
    arr = ((x + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a) for a in arr]
