"""U-Net hooks: a shift of the mid-block output ("h-space"), added by a forward hook, no patched diffusers.

The U-Net bottleneck, the output of ``unet.mid_block``, is where Kwon et al. ("Diffusion Models Already Have
a Semantic Latent Space") and Li et al. ("Self-Discovering Interpretable Diffusion Latent Directions") edit:
``h <- h + delta`` at every denoising step. :class:`MidBlockShift` adds a per-row ``delta`` to that output.
A pipeline sets the rows' deltas before each U-Net call (:meth:`MidBlockShift.set`); when the call is split
into sub-batches, each sub-batch takes the next rows.

Anything with an ``offset(batch, shape, device, dtype)`` method returning a ``(batch, *shape)`` tensor is an
:class:`HSpaceOffset` (a self-discovered direction with its strength, a per-image fair choice); a pipeline
sums those it is given.
"""

from __future__ import annotations

from typing import Protocol

import torch


class HSpaceOffset(Protocol):
    def offset(self, batch: int, shape: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The shift of each of ``batch`` images' mid-block output, ``(batch, *shape)``."""
        ...


def mid_block_shape(unet, height: int, width: int, vae_scale_factor: int) -> tuple[int, int, int]:
    """(channels, h, w) of ``unet.mid_block``'s output for images of ``height`` x ``width`` pixels."""
    downsamples = sum(1 for b in unet.down_blocks if getattr(b, "downsamplers", None))
    h, w = height // vae_scale_factor, width // vae_scale_factor
    for _ in range(downsamples):  # diffusers' Downsample2D: a stride-2 convolution with padding 1
        h, w = (h + 1) // 2, (w + 1) // 2
    return int(unet.config.block_out_channels[-1]), h, w


def total_offset(offsets, batch: int, shape: tuple[int, ...], device, dtype) -> torch.Tensor | None:
    """The sum of ``offsets``' shifts, ``(batch, *shape)``; None when there are none."""
    total = None
    for o in offsets or ():
        d = o.offset(batch, tuple(shape), device, dtype)
        if tuple(d.shape) != (batch, *shape):
            raise ValueError(f"an h-space offset returned shape {tuple(d.shape)}; expected {(batch, *shape)}.")
        total = d if total is None else total + d
    return total


def conditional_rows(offset: torch.Tensor | None, branches: int, do_cfg: bool) -> torch.Tensor | None:
    """Per-row h-space shifts for a U-Net batch of ``branches`` x images: ``offset`` on the prompt rows only.

    With classifier-free guidance the rows are [unconditional, prompt, edit concepts ...]; the shift goes to the
    prompt rows (the conditional branch, as the directions paper's code does). Without it every row is a prompt row.
    """
    if offset is None:
        return None
    if not do_cfg:
        return offset
    zeros = torch.zeros_like(offset)
    return torch.cat([zeros, offset, *([zeros] * (branches - 2))])


class MidBlockShift:
    """``with MidBlockShift(unet) as shift: shift.set(deltas); unet(...)`` adds ``deltas`` to the mid-block output.

    ``deltas`` has one row per U-Net input row (``None`` rows: leave a call unchanged). Gradients flow through
    ``deltas``, so the same hook serves learning a direction and applying it.
    """

    def __init__(self, unet) -> None:
        self.unet = unet
        self.deltas: torch.Tensor | None = None
        self.cursor = 0
        self._handle = None

    def set(self, deltas: torch.Tensor | None) -> None:
        self.deltas, self.cursor = deltas, 0

    def _hook(self, module, args, output):
        if self.deltas is None:
            return output
        n = output.shape[0]
        rows = self.deltas[self.cursor : self.cursor + n]
        if rows.shape[0] != n:
            raise ValueError(f"MidBlockShift holds {self.deltas.shape[0]} rows; the U-Net asked for rows {self.cursor}..{self.cursor + n}.")
        self.cursor += n
        return output + rows.to(output.dtype)

    def __enter__(self) -> MidBlockShift:
        self._handle = self.unet.mid_block.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self.set(None)
