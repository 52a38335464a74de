"""What the rectified-flow transformer families (SD3 / SD3.5, FLUX.1) share.

The denoiser predicts a velocity; ``FlowMatchEulerDiscreteScheduler`` steps along it. Classifier-free
guidance and SEGA combine velocities exactly as they combine noise estimates on a U-Net: every formula in
:mod:`segakit.sega.guidance` is linear in the estimates, so a concept's direction ``v_concept - v_uncond``
plays the role of ``eps_concept - eps_uncond``. Starting latents are unit Gaussian noise (no
``init_noise_sigma``); the timesteps come from the family pipeline's own sigma rule, with the resolution
shift ``mu`` when the scheduler asks for it (``use_dynamic_shifting``).

Prompt encoding is delegated to diffusers' own pipeline class of the family (``reference``), built on
the same text encoders and tokenizers, so that every encoder quirk (CLIP skip, T5 length, pooled
projections, LoRA scale) stays diffusers' and the parity tests hold by construction.
"""

from __future__ import annotations

import torch
from diffusers.utils.torch_utils import randn_tensor

from segakit.core.errors import UserError
from segakit.core.families.base import Family
from segakit.core.hooks import HSpaceSite, transformer_site


class RectifiedFlowFamily(Family):
    flow = True
    #: diffusers' pipeline class of the family (for prompt encoding)
    reference_class: type | None = None
    default_max_sequence_length: int = 256

    def __init__(self, pipe) -> None:
        super().__init__(pipe)
        self.max_sequence_length = self.default_max_sequence_length

    @property
    def denoiser(self) -> torch.nn.Module:
        return self.pipe.transformer

    def reference(self):
        """diffusers' pipeline of this family over the same modules (cheap: nothing is copied)."""
        names = self.reference_class._get_signature_keys(self.reference_class)[0]
        components = {n: getattr(self.pipe, n, None) for n in names}
        return self.reference_class(**components)

    def default_block(self) -> int:
        """The block whose image tokens are h-space when a call or file names none: the middle joint block (of the
        embedded flow model's four, blocks 0-2 keep the same share of the other attributes at equal success and the
        last keeps less; ``benchmarks/flow_direction_blocks.py``, docs/flow.md)."""
        return (len(self.denoiser.transformer_blocks) - 1) // 2

    def hspace_site(self, height: int, width: int, site: str | None = None) -> HSpaceSite:
        if site is None:
            block = self.default_block()
        elif site.startswith("transformer_blocks."):
            block = int(site.rpartition(".")[2])
        else:
            raise UserError(
                f"site {site!r} is a U-Net's; on this {self.name.upper()} model h-space is a transformer block (transformer_blocks.K)."
            )
        return transformer_site(self.denoiser, block, self.image_seq_len(height, width))

    def prepare_latents(self, batch, height, width, dtype, device, generator, latents=None) -> torch.Tensor:
        shape = self.latent_shape(batch, height, width)
        if isinstance(generator, list) and len(generator) != batch:
            raise UserError(f"{len(generator)} generators were passed for {batch} images; pass one per image.")
        if latents is None:
            return randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        if tuple(latents.shape) != shape:
            raise UserError(
                f"latents have shape {tuple(latents.shape)}; expected {shape} (unpacked: batch, channels, height, width)."
            )
        return latents.to(device=device, dtype=dtype)

    def sigmas(self, steps: int):
        """The sigmas the family pipeline passes to the scheduler (None: the scheduler's own)."""
        return None

    def image_seq_len(self, height: int, width: int) -> int:
        raise NotImplementedError

    def shift_mu(self, height: int, width: int) -> float | None:
        """The resolution-dependent shift, where the scheduler uses one (the family pipeline's rule)."""
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift

        config = self.pipe.scheduler.config
        if not config.get("use_dynamic_shifting", None):
            return None
        return calculate_shift(
            self.image_seq_len(height, width),
            config.get("base_image_seq_len", 256),
            config.get("max_image_seq_len", 4096),
            config.get("base_shift", 0.5),
            config.get("max_shift", self.default_max_shift),
        )

    default_max_shift: float = 1.16

    def set_timesteps(self, steps: int, device, height: int, width: int) -> torch.Tensor:
        from diffusers.pipelines.flux.pipeline_flux import retrieve_timesteps

        kwargs = {}
        mu = self.shift_mu(height, width)
        if mu is not None:
            kwargs["mu"] = mu
        timesteps, _ = retrieve_timesteps(self.pipe.scheduler, steps, device, sigmas=self.sigmas(steps), **kwargs)
        if hasattr(self.pipe.scheduler, "set_begin_index"):
            self.pipe.scheduler.set_begin_index(0)
        return timesteps
