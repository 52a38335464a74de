"""FLUX.1: a double- and single-stream transformer over CLIP's pooled projection and T5's tokens, on packed
latents (2x2 patches as tokens), rectified flow.

Packing is this adapter's business: the loop hands it latents (batch, channels, height, width), it packs
them into FLUX's (batch, tokens, channels x 4) for the transformer call and unpacks the velocity, so SEGA's
per-channel thresholds are taken over the image, not over packed tokens.

Guidance: FLUX.1-dev is guidance-distilled. Its ``guidance_scale`` (default 3.5) is an *embedding* given to the
transformer, not a second branch; there is no unconditional estimate unless the call asks for "true CFG"
(``true_cfg_scale > 1`` with a ``negative_prompt``), as diffusers' ``FluxPipeline``. SEGA needs a reference
estimate to take a concept's direction against: the negative prompt's under true CFG, otherwise the prompt's
own estimate (so ``psi = v_concept - v_prompt``); docs/flow.md says why. FLUX.1-schnell (no guidance embedding)
follows the same rule.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import FluxPipeline

from segakit.core.conditioning import Conditioning
from segakit.core.errors import UserError
from segakit.core.families.rectified import RectifiedFlowFamily


def pack(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H/2 * W/2, C * 4): each 2x2 patch becomes one token (FLUX's layout)."""
    b, c, h, w = x.shape
    return x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The inverse of :func:`pack` for latents of height ``h`` and width ``w``."""
    b, _, d = tokens.shape
    c = d // 4
    return tokens.view(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def image_ids(h: int, w: int, device, dtype) -> torch.Tensor:
    """Position ids of the packed tokens: (row, column) of each 2x2 patch in channels 1 and 2."""
    ids = torch.zeros(h // 2, w // 2, 3)
    ids[..., 1] = torch.arange(h // 2)[:, None]
    ids[..., 2] = torch.arange(w // 2)[None, :]
    return ids.reshape(-1, 3).to(device=device, dtype=dtype)


class FluxFamily(RectifiedFlowFamily):
    name = "flux"
    reference_class = FluxPipeline
    guidance_embedded = True
    default_guidance_scale = 3.5
    default_max_sequence_length = 512
    default_max_shift = 1.15

    def __init__(self, pipe) -> None:
        super().__init__(pipe)
        self.embedded_guidance: float | None = None

    def default_size(self) -> int:
        return 128 * self.pipe.vae_scale_factor

    @property
    def size_multiple(self) -> int:
        return self.pipe.vae_scale_factor * 2

    def latent_shape(self, batch: int, height: int, width: int) -> tuple[int, int, int, int]:
        f = self.pipe.vae_scale_factor * 2
        return (batch, self.denoiser.config.in_channels // 4, 2 * (height // f), 2 * (width // f))

    def image_seq_len(self, height: int, width: int) -> int:
        f = self.pipe.vae_scale_factor * 2
        return (height // f) * (width // f)

    def hspace_site(self, height: int, width: int, site: str | None = None):
        if site is not None and site.startswith("single_transformer_blocks."):
            raise UserError(
                "FLUX's single-stream blocks mix text and image tokens; h-space sites are transformer_blocks.K."
            )
        return super().hspace_site(height, width, site)

    def shift_mu(self, height: int, width: int) -> float | None:
        # FluxPipeline always passes mu (schedulers without dynamic shifting ignore it)
        config = self.pipe.scheduler.config
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift

        return calculate_shift(
            self.image_seq_len(height, width), config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096),
            config.get("base_shift", 0.5), config.get("max_shift", self.default_max_shift),
        )  # fmt: skip

    def sigmas(self, steps: int):
        if getattr(self.pipe.scheduler.config, "use_flow_sigmas", False):
            return None
        return np.linspace(1.0, 1 / steps, steps)

    def has_uncond(self, guidance_scale: float, negative_prompt, true_cfg_scale: float) -> bool:
        return true_cfg_scale > 1.0 and negative_prompt is not None

    def guidance(self, guidance_scale: float, true_cfg_scale: float) -> float:
        self.embedded_guidance = guidance_scale if self.denoiser.config.guidance_embeds else None
        return true_cfg_scale

    def encode(self, texts: list[str], device, lora_scale: float | None = None) -> Conditioning:
        embeds, pooled, _ = self.reference().encode_prompt(
            prompt=texts, prompt_2=None, device=device, num_images_per_prompt=1,
            max_sequence_length=self.max_sequence_length, lora_scale=lora_scale,
        )  # fmt: skip
        return Conditioning(embeds, pooled)

    def _call(self, x, t, cond: Conditioning, extra: dict) -> torch.Tensor:
        b, _, h, w = x.shape
        guidance = None
        if self.embedded_guidance is not None:
            guidance = torch.full([b], self.embedded_guidance, device=x.device, dtype=torch.float32)
        timestep = t.expand(b).to(x.dtype) / 1000
        txt_ids = torch.zeros(cond.embeds.shape[1], 3, device=x.device, dtype=cond.embeds.dtype)
        out = self.denoiser(
            hidden_states=pack(x), timestep=timestep, guidance=guidance, pooled_projections=cond.pooled,
            encoder_hidden_states=cond.embeds, txt_ids=txt_ids, img_ids=image_ids(h, w, x.device, x.dtype),
            joint_attention_kwargs=extra.get("cross_attention_kwargs"), return_dict=False,
        )[0]  # fmt: skip
        return unpack(out, h, w)
