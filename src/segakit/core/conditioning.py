"""Prompt encoding per model family, and the per-branch conditioning the U-Net sees.

- SD 1.x / 2.x: one CLIP text encoder; the U-Net gets its last hidden states.
- SDXL: two text encoders; the U-Net gets both penultimate hidden states side by side, plus the
  second encoder's pooled projection and the size/crop "time ids" as added conditions.

Encodings match diffusers' ``StableDiffusionPipeline``/``StableDiffusionXLPipeline`` (and, for SD, the
deprecated ``SemanticStableDiffusionPipeline``) so that images agree with theirs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


@dataclass
class Conditioning:
    """Text conditioning for a stack of U-Net rows: one row per (branch, image)."""

    embeds: torch.Tensor  # (rows, seq, dim)
    pooled: torch.Tensor | None = None  # SDXL: (rows, pooled_dim)
    time_ids: torch.Tensor | None = None  # SDXL: (rows, 6)
    image_embeds: list[torch.Tensor] | None = None  # IP-Adapter: one (rows, ...) tensor per loaded adapter

    def __len__(self) -> int:
        return self.embeds.shape[0]

    def repeat_rows(self, n: int) -> Conditioning:
        """Each row repeated ``n`` times in place (row r becomes rows r*n .. r*n+n-1)."""
        return Conditioning(
            self.embeds.repeat_interleave(n, dim=0),
            None if self.pooled is None else self.pooled.repeat_interleave(n, dim=0),
            None if self.time_ids is None else self.time_ids.repeat_interleave(n, dim=0),
            None if self.image_embeds is None else [e.repeat_interleave(n, dim=0) for e in self.image_embeds],
        )

    def rows(self, start: int, stop: int) -> Conditioning:
        return Conditioning(
            self.embeds[start:stop],
            None if self.pooled is None else self.pooled[start:stop],
            None if self.time_ids is None else self.time_ids[start:stop],
            None if self.image_embeds is None else [e[start:stop] for e in self.image_embeds],
        )

    def unet_kwargs(self) -> dict:
        kwargs: dict = {"encoder_hidden_states": self.embeds}
        added: dict = {}
        if self.pooled is not None:
            added.update(text_embeds=self.pooled, time_ids=self.time_ids)
        if self.image_embeds is not None:
            added["image_embeds"] = self.image_embeds
        if added:
            kwargs["added_cond_kwargs"] = added
        return kwargs

    @staticmethod
    def cat(parts: Sequence[Conditioning]) -> Conditioning:
        pooled = [p.pooled for p in parts]
        time_ids = [p.time_ids for p in parts]
        images = [p.image_embeds for p in parts]
        return Conditioning(
            torch.cat([p.embeds for p in parts]),
            None if pooled[0] is None else torch.cat(pooled),  # type: ignore[arg-type]
            None if time_ids[0] is None else torch.cat(time_ids),  # type: ignore[arg-type]
            None if images[0] is None else [torch.cat([im[k] for im in images]) for k in range(len(images[0]))],  # type: ignore[index]
        )


def is_sdxl(unet) -> bool:
    """SDXL-family U-Nets take pooled text embeddings and time ids as added conditions."""
    return getattr(unet.config, "addition_embed_type", None) == "text_time"


def _token_ids(tokenizer, texts: list[str]) -> torch.Tensor:
    return tokenizer(
        texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids


def encode_sd(tokenizer, text_encoder, texts: list[str], device: torch.device) -> torch.Tensor:
    """SD 1.x/2.x: the text encoder's last hidden states, (len(texts), seq, dim)."""
    ids = _token_ids(tokenizer, texts).to(device)
    mask = None
    if getattr(text_encoder.config, "use_attention_mask", False):
        mask = tokenizer(
            texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).attention_mask.to(device)
    return text_encoder(ids, attention_mask=mask)[0]


def encode_sdxl(
    tokenizers: Sequence, text_encoders: Sequence, texts: list[str], device: torch.device,
    convert: Callable[[list[str], object], list[str]] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """SDXL: both encoders' penultimate hidden states concatenated, and the pooled projection.

    ``convert(texts, tokenizer)`` rewrites the texts per tokenizer (textual-inversion tokens) when given.
    """
    hidden, pooled = [], None
    for tokenizer, encoder in zip(tokenizers, text_encoders):
        tokenizer_texts = convert(texts, tokenizer) if convert is not None else texts
        out = encoder(_token_ids(tokenizer, tokenizer_texts).to(device), output_hidden_states=True)
        if pooled is None and out[0].ndim == 2:
            pooled = out[0]
        hidden.append(out.hidden_states[-2])
    if pooled is None:
        raise ValueError("No SDXL text encoder returned a pooled projection (expected CLIPTextModelWithProjection).")
    return torch.cat(hidden, dim=-1), pooled


def sdxl_time_ids(height: int, width: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(original size, crop top-left, target size) for an uncropped image of the output size."""
    return torch.tensor([[height, width, 0, 0, height, width]], dtype=dtype, device=device)
