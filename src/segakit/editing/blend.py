"""Latent blending on an edit-friendly inversion: outside the edit's region, put the sample back on the inversion.

An edit-friendly DDPM inversion (:func:`segakit.core.inversion.ddpm_invert`) stores, besides its noises, the latent
every sampling step lands on when nothing is edited (``EditFriendlyInversion.targets``). The masked editors
(LEDITS++'s SEGA, OnTheFly's ``mask``) add their guidance only inside a mask, yet the pixels outside it still drift:
the U-Net sees the whole latent, so an edit in one place changes its prediction everywhere. Blending after each
step, x <- target + region * (x - target), holds those pixels on the inversion's trajectory, so at the last step
they are the input's latent exactly. ``region`` is the union of the masks of the steps so far, so a pixel once
edited stays free to follow its edit. With ``dilate`` r, each step's mask grows by r latent pixels (a (2r+1)-square
maximum) before it joins the region, so a region made of the scattered pixels of noise masks becomes whole and the
edit inside it stays in one piece. (The same idea as Blended Latent Diffusion, Avrahami et al. 2023, which
blends with a user's mask and a freshly noised input; here the mask is the editor's own and the target the
inversion's.) segakit's addition; off by default, so the editors stay their papers' recipes. On the embedded model it keeps
more of the rest and edits less (docs/editing.md, "Latent blending").
"""

from __future__ import annotations

import torch

from segakit.core.errors import UserError, arg

MAX_DILATE = 8  # latent pixels


def blend(x: torch.Tensor, target: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """``x`` where ``region`` is 1, ``target`` where it is 0 (``region`` broadcasts over channels)."""
    return target + region * (x - target)


def grow(region: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor:
    """The union of ``region`` (None: empty) and ``mask``, both (N, 1, h, w) of 0 and 1."""
    return mask.clone() if region is None else torch.maximum(region, mask)


def dilate(mask: torch.Tensor, r: int) -> torch.Tensor:
    """``mask`` (N, 1, h, w) of 0 and 1, grown by ``r`` pixels: 1 wherever a 1 lies within the (2r+1)-square."""
    if r <= 0:
        return mask
    return torch.nn.functional.max_pool2d(mask, 2 * r + 1, stride=1, padding=r)


def check_dilate(r, blend: bool) -> None:
    """Raise :class:`UserError` unless ``r`` is a whole number of latent pixels in 0..MAX_DILATE, and 0 without
    ``blend`` (the dilation grows the blend's masks)."""
    if isinstance(r, bool) or not isinstance(r, int) or not 0 <= r <= MAX_DILATE:
        raise UserError(f"{arg('blend_dilate')} {r!r} is not a whole number of latent pixels from 0 to {MAX_DILATE}.")
    if r and not blend:
        raise UserError(f"{arg('blend_dilate')} {r} grows the blend's masks; it needs {arg('blend')}.")


def blend_step(x: torch.Tensor, inversion, i: int, mask: torch.Tensor, region: torch.Tensor | None, dilate_by: int = 0):
    """After sampling step ``i`` with this step's ``mask`` (grown by ``dilate_by`` pixels): the grown region, and
    ``x`` blended onto the inversion's latent there."""
    if inversion.targets is None:
        raise ValueError(
            "blending needs the inversion's trajectory (EditFriendlyInversion.targets); ddpm_invert stores it."
        )
    region = grow(region, dilate(mask, dilate_by))
    return blend(x, inversion.targets[i], region), region
