"""Text conditioning for editing, and the edit direction made from two caption sets.

Pix2Pix-OnTheFly (after pix2pix-zero): encode each caption to the full token sequence the U-Net sees, take the
mean over the captions of each set, and subtract: ``direction = mean(after) - mean(before)``, shape
``(1, seq, dim)``. For SDXL the sequence is both encoders' penultimate states side by side, and the pooled
projection (an added condition of SDXL's U-Net) gets its own direction the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from segakit.core.conditioning import Conditioning, encode_sd, encode_sdxl, is_sdxl, sdxl_time_ids
from segakit.core.errors import UserError


@dataclass
class TextModels:
    """The text side of a pipeline: tokenizer(s), text encoder(s), and whether the U-Net is SDXL-shaped."""

    tokenizer: object
    text_encoder: torch.nn.Module
    tokenizer_2: object | None = None
    text_encoder_2: torch.nn.Module | None = None
    sdxl: bool = False
    image_size: tuple[int, int] = (64, 64)  # SDXL's size conditioning

    @classmethod
    def of(cls, pipe, image_size: tuple[int, int]) -> TextModels:
        return cls(pipe.tokenizer, pipe.text_encoder, getattr(pipe, "tokenizer_2", None), getattr(pipe, "text_encoder_2", None),
                   is_sdxl(pipe.unet), image_size)  # fmt: skip

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> Conditioning:
        """One conditioning row per text, as the U-Net takes it."""
        texts = list(texts)
        device = next(self.text_encoder.parameters()).device if self.text_encoder is not None else torch.device("cpu")
        if not self.sdxl:
            return Conditioning(encode_sd(self.tokenizer, self.text_encoder, texts, device))
        tokenizers = [t for t in (self.tokenizer, self.tokenizer_2) if t is not None]
        encoders = [e for e in (self.text_encoder, self.text_encoder_2) if e is not None]
        embeds, pooled = encode_sdxl(tokenizers, encoders, texts, device)
        time_ids = sdxl_time_ids(*self.image_size, embeds.dtype, device).repeat(len(texts), 1)
        return Conditioning(embeds, pooled, time_ids)


@dataclass
class EditDirection:
    """``after - before`` in text-embedding space: ``embeds`` (1, seq, dim); SDXL: ``pooled`` (1, pooled_dim)."""

    embeds: torch.Tensor
    pooled: torch.Tensor | None = None

    def add_to(self, cond: Conditioning, scale: float = 1.0) -> Conditioning:
        """``cond`` moved along the direction (every row)."""
        pooled = (
            cond.pooled
            if self.pooled is None or cond.pooled is None
            else cond.pooled + scale * self.pooled.to(cond.pooled)
        )
        return Conditioning(cond.embeds + scale * self.embeds.to(cond.embeds), pooled, cond.time_ids)


def mean_embedding(cond: Conditioning) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The mean over rows (captions) of the token-sequence embeddings (and pooled ones), keeping a batch axis of 1."""
    pooled = None if cond.pooled is None else cond.pooled.mean(0, keepdim=True)
    return cond.embeds.mean(0, keepdim=True), pooled


def direction_from_embeddings(before: Conditioning, after: Conditioning) -> EditDirection:
    """mean(after) - mean(before) (pix2pix-zero's edit direction, over full token sequences)."""
    (b, bp), (a, ap) = mean_embedding(before), mean_embedding(after)
    return EditDirection(a - b, None if ap is None or bp is None else ap - bp)


def edit_direction(text: TextModels, before: Sequence[str], after: Sequence[str]) -> EditDirection:
    """The edit direction from captions of the image before and after the edit."""
    if not before or not after:
        raise UserError(
            f"An edit direction needs at least one caption before and one after the edit; got {len(before)} before and {len(after)} after."
        )
    return direction_from_embeddings(text.encode(before), text.encode(after))
