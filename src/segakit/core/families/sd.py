"""Stable Diffusion 1.x / 2.x and SDXL: a U-Net on epsilon or v-prediction, one or two CLIP text encoders.

- SD 1.x / 2.x: the text encoder's last hidden states are the U-Net's cross-attention rows.
- SDXL: both encoders' penultimate hidden states side by side, the second encoder's pooled projection and
  the size/crop "time ids" as added conditions; an empty negative prompt is zeros
  (``force_zeros_for_empty_prompt``), as in diffusers' ``StableDiffusionXLPipeline``.
"""

from __future__ import annotations

import torch
from diffusers.utils import USE_PEFT_BACKEND, scale_lora_layers, unscale_lora_layers

from segakit.core.conditioning import Conditioning, encode_sd, encode_sdxl, sdxl_time_ids
from segakit.core.families.base import Family


class SDFamily(Family):
    name = "sd"
    default_guidance_scale = 7.5

    def _encoders(self) -> list:
        return [e for e in (self.pipe.text_encoder, getattr(self.pipe, "text_encoder_2", None)) if e is not None]

    def encode(self, texts: list[str], device, lora_scale: float | None = None) -> Conditioning:
        """One row per text; textual-inversion tokens expanded; ``lora_scale`` scales the encoders' LoRA layers."""
        pipe, encoders = self.pipe, self._encoders()
        scaled = lora_scale is not None and USE_PEFT_BACKEND
        if scaled:
            pipe._lora_scale = lora_scale
            for e in encoders:
                scale_lora_layers(e, lora_scale)
        try:
            return self._encode(texts, device)
        finally:
            if scaled:
                for e in encoders:
                    unscale_lora_layers(e, lora_scale)

    def _encode(self, texts: list[str], device) -> Conditioning:
        pipe = self.pipe
        embeds = encode_sd(pipe.tokenizer, pipe.text_encoder, pipe.maybe_convert_prompt(texts, pipe.tokenizer), device)
        return Conditioning(embeds.to(dtype=pipe.text_encoder.dtype, device=device))

    def _call(self, x, t, cond: Conditioning, extra: dict) -> torch.Tensor:
        x = self.pipe.scheduler.scale_model_input(x, t)
        kwargs = (
            {"cross_attention_kwargs": extra["cross_attention_kwargs"]} if extra.get("cross_attention_kwargs") else {}
        )
        return self.pipe.unet(x, t, **cond.unet_kwargs(), **kwargs, return_dict=False)[0]


class SDXLFamily(SDFamily):
    name = "sdxl"
    default_guidance_scale = 5.0

    def _encode(self, texts: list[str], device) -> Conditioning:
        pipe = self.pipe
        tokenizers = [t for t in (pipe.tokenizer, pipe.tokenizer_2) if t is not None]
        embeds, pooled = encode_sdxl(tokenizers, self._encoders(), texts, device, convert=pipe.maybe_convert_prompt)
        dtype = (pipe.text_encoder_2 or pipe.unet).dtype
        return Conditioning(embeds.to(dtype=dtype, device=device), pooled.to(dtype=dtype, device=device))

    def uncond(self, negatives, prompt_cond: Conditioning, device, lora_scale=None) -> Conditioning:
        if negatives is None and self.pipe.config.force_zeros_for_empty_prompt:
            return Conditioning(torch.zeros_like(prompt_cond.embeds), torch.zeros_like(prompt_cond.pooled))
        return super().uncond(negatives, prompt_cond, device, lora_scale)

    def finish(self, conds: list[Conditioning], height: int, width: int) -> None:
        for c in conds:
            c.time_ids = sdxl_time_ids(height, width, c.embeds.dtype, c.embeds.device).repeat(len(c), 1)

    def precomputed(self, embeds, pooled, device) -> Conditioning:
        from segakit.core.errors import UserError

        if pooled is None:
            raise UserError("SDXL models need editing_pooled_embeddings together with editing_prompt_embeddings.")
        return super().precomputed(embeds, pooled, device)
