"""Stable Diffusion 3 / 3.5: an MMDiT transformer over two CLIP encoders and (optionally) T5, rectified flow.

Rows are diffusers' ``StableDiffusion3Pipeline`` encoding: the CLIP encoders' penultimate hidden states side by
side, zero-padded to the joint attention width and followed by T5's tokens (zeros when the folder has no
T5, ``text_encoder_3=None``); the pooled rows are both CLIP projections. The unconditional branch is the
encoded negative prompt (empty by default) whenever ``guidance_scale > 1``; default guidance 7.0.

Without T5 the zero rows are counted, not computed (:mod:`segakit.core.families.counted_rows`): one row with
multiplicity ``max_sequence_length``, exact, while the joint blocks run diffusers' own attention.
"""

from __future__ import annotations

import contextlib

import torch
from diffusers import StableDiffusion3Pipeline

from segakit.core.conditioning import Conditioning
from segakit.core.families.counted_rows import counted_rows, fold_zero_rows, stock_joint_attention
from segakit.core.families.rectified import RectifiedFlowFamily


class SD3Family(RectifiedFlowFamily):
    name = "sd3"
    reference_class = StableDiffusion3Pipeline
    default_guidance_scale = 7.0
    default_max_sequence_length = 256
    default_max_shift = 1.16
    #: (rows, n): conditionings of ``rows`` text rows end in one zero row standing for ``n`` (set by :meth:`encode`)
    folded: tuple[int, int] = (0, 1)

    def default_size(self) -> int:
        return self.denoiser.config.sample_size * self.pipe.vae_scale_factor

    def image_seq_len(self, height: int, width: int) -> int:
        f, p = self.pipe.vae_scale_factor, self.denoiser.config.patch_size
        return (height // f // p) * (width // f // p)

    @property
    def size_multiple(self) -> int:
        return self.pipe.vae_scale_factor * self.denoiser.config.patch_size

    def encode(self, texts: list[str], device, lora_scale: float | None = None) -> Conditioning:
        embeds, _, pooled, _ = self.reference().encode_prompt(
            prompt=texts, prompt_2=None, prompt_3=None, device=device, num_images_per_prompt=1,
            do_classifier_free_guidance=False, max_sequence_length=self.max_sequence_length, lora_scale=lora_scale,
        )  # fmt: skip
        if self.pipe.text_encoder_3 is None and stock_joint_attention(self.denoiser):
            folded = fold_zero_rows(embeds, self.max_sequence_length)
            if folded is not None:
                embeds = folded
                self.folded = (embeds.shape[1], self.max_sequence_length)
        return Conditioning(embeds, pooled)

    def _call(self, x, t, cond: Conditioning, extra: dict) -> torch.Tensor:
        rows, n = self.folded
        n = n if cond.embeds.shape[1] == rows else 1  # how many zero rows the last row stands for
        with counted_rows(self.denoiser, n) if n > 1 else contextlib.nullcontext():
            return self.denoiser(
                hidden_states=x, timestep=t.expand(x.shape[0]), encoder_hidden_states=cond.embeds,
                pooled_projections=cond.pooled, joint_attention_kwargs=extra.get("cross_attention_kwargs"), return_dict=False,
            )[0]  # fmt: skip
