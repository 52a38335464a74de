"""Denoiser hooks: a shift of one block's output ("h-space"), added by a forward hook, no patched diffusers.

The U-Net bottleneck, the output of ``unet.mid_block``, is where Kwon et al. ("Diffusion Models Already Have
a Semantic Latent Space") and Li et al. ("Self-Discovering Interpretable Diffusion Latent Directions") edit:
``h <- h + delta`` at every denoising step. :class:`MidBlockShift` adds a per-row ``delta`` to that output.
A pipeline sets the rows' deltas before each U-Net call (:meth:`MidBlockShift.set`); when the call is split
into sub-batches, each sub-batch takes the next rows.

On a transformer (SD3, FLUX) the site is one joint / double-stream block's image-token output, (tokens, width):
:class:`BlockShift` adds the rows there, leaving the text tokens alone; :class:`HSpaceSite` names a site the way a
direction file records it ("mid_block", "transformer_blocks.3").

Anything with an ``offset(batch, shape, device, dtype)`` method returning a ``(batch, *shape)`` tensor is an
:class:`HSpaceOffset` (a self-discovered direction with its strength, a per-image fair choice); a pipeline
sums those it is given.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class HSpaceSite:
    """Where h-space is on one denoiser: the module whose output is shifted, its name, the per-row shape."""

    name: str  # "mid_block" (U-Net) or "transformer_blocks.K" (SD3 / FLUX)
    module: torch.nn.Module
    shape: tuple[int, ...]  # (C, h, w) on a U-Net; (tokens, width) on a transformer


def transformer_site(transformer, block: int, tokens: int) -> HSpaceSite:
    """Block ``block`` of ``transformer.transformer_blocks`` (SD3's joint blocks, FLUX's double-stream blocks)."""
    blocks = transformer.transformer_blocks
    if not 0 <= block < len(blocks):
        from segakit.core.errors import UserError

        raise UserError(
            f"block {block} is not one of this transformer's {len(blocks)} blocks (0 to {len(blocks) - 1})."
        )
    width = transformer.config.num_attention_heads * transformer.config.attention_head_dim
    return HSpaceSite(f"transformer_blocks.{block}", blocks[block], (tokens, width))


class BlockShift:
    """``with BlockShift(module) as shift: shift.set(deltas); denoiser(...)`` adds ``deltas`` to ``module``'s output
    (to its image tokens where the block returns (text, image) as transformer blocks do).

    ``deltas`` has one row per denoiser input row (``None``: leave a call unchanged). Gradients flow through
    ``deltas``, so the same hook serves learning a direction and applying it.
    """

    def __init__(self, module) -> None:
        self.module = module
        self.deltas: torch.Tensor | None = None
        self.cursor = 0
        self._handle = None

    def set(self, deltas: torch.Tensor | None) -> None:
        self.deltas, self.cursor = deltas, 0

    def _rows(self, n: int) -> torch.Tensor:
        rows = self.deltas[self.cursor : self.cursor + n]
        if rows.shape[0] != n:
            raise ValueError(
                f"BlockShift holds {self.deltas.shape[0]} rows; the denoiser asked for rows {self.cursor}..{self.cursor + n}."
            )
        self.cursor += n
        return rows

    def _hook(self, module, args, output):
        if self.deltas is None:
            return output
        if isinstance(output, tuple):  # transformer blocks: (text tokens, image tokens)
            text, image = output
            return text, image + self._rows(image.shape[0]).to(image.dtype)
        return output + self._rows(output.shape[0]).to(output.dtype)

    def __enter__(self) -> BlockShift:
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self.set(None)


class MidBlockShift(BlockShift):
    """:class:`BlockShift` on a U-Net's mid block."""

    def __init__(self, unet) -> None:
        super().__init__(unet.mid_block)
        self.unet = unet
