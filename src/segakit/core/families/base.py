"""What a model family is to the sampling loop: one small object per pipeline, its adapter.

The loop (``SegaPipeline.__call__``) and the guidance math never ask which family they run on. They ask
the adapter to encode texts into denoiser rows (:class:`~segakit.core.conditioning.Conditioning`), to draw
the starting latents, to set the scheduler's timesteps, to run the denoiser on a stack of rows and to turn
the final latents into something the autoencoder decodes. Latents cross this boundary *unpacked*, shaped
(batch, channels, height, width), on every family: a family whose denoiser takes packed tokens (FLUX)
packs inside :meth:`Family.predict` and unpacks its output, so SEGA's thresholds are always per latent
channel over the image, as the paper defines them.

Adding a family is one module in this package (a subclass of :class:`Family`), one line in
:func:`segakit.core.families.family_for`, a pipeline class naming its components (``segakit.sega``) and a
parity test against diffusers' own pipeline on small random components (``tests/test_flow_parity.py``
shows how). docs/flow.md says the same for users.
"""

from __future__ import annotations

import inspect

import torch
from diffusers.utils.torch_utils import randn_tensor

from segakit.core.conditioning import Conditioning
from segakit.core.errors import UserError
from segakit.core.hooks import HSpaceSite, mid_block_shape


class Family:
    """The adapter of one model family, bound to one pipeline (``pipe``) whose components it reads."""

    name: str = "?"
    #: whether the family is a rectified flow (velocity prediction, FlowMatch scheduler)
    flow: bool = False
    #: whether the unconditional branch comes from ``guidance_scale > 1`` (U-Nets, SD3); FLUX's distilled
    #: guidance is an embedding, and its unconditional branch is "true CFG" with a negative prompt
    guidance_embedded: bool = False

    def __init__(self, pipe) -> None:
        self.pipe = pipe

    # ---- the denoiser and its defaults

    @property
    def denoiser(self) -> torch.nn.Module:
        return self.pipe.unet

    @property
    def dtype(self) -> torch.dtype:
        return self.denoiser.dtype

    def default_size(self) -> int:
        """The pixel side an image gets when the call gives no height or width (the family pipeline's default)."""
        return self.denoiser.config.sample_size * self.pipe.vae_scale_factor

    @property
    def size_multiple(self) -> int:
        return self.pipe.vae_scale_factor

    default_guidance_scale: float = 7.5

    def has_uncond(self, guidance_scale: float, negative_prompt, true_cfg_scale: float) -> bool:
        """Whether the call runs an unconditional (or negative) branch beside the prompt."""
        return guidance_scale > 1.0

    def guidance(self, guidance_scale: float, true_cfg_scale: float) -> float:
        """The scale of classifier-free guidance (prompt minus unconditional) for this call."""
        return guidance_scale

    # ---- conditioning

    def encode(self, texts: list[str], device: torch.device, lora_scale: float | None = None) -> Conditioning:
        raise NotImplementedError

    def uncond(self, negatives: list[str] | None, prompt_cond: Conditioning, device, lora_scale=None) -> Conditioning:
        """The unconditional rows, one per prompt: the negative prompts' encoding, or the empty prompt's."""
        return self.encode(negatives or [""] * len(prompt_cond), device, lora_scale)

    def finish(self, conds: list[Conditioning], height: int, width: int) -> None:
        """Per-call additions to every conditioning (SDXL's size ids); nothing on most families."""

    def precomputed(self, embeds: torch.Tensor, pooled: torch.Tensor | None, device) -> Conditioning:
        """A conditioning from precomputed concept embeddings (``editing_prompt_embeddings``)."""
        return Conditioning(
            embeds.to(device=device, dtype=self.dtype), None if pooled is None else pooled.to(device, self.dtype)
        )

    # ---- latents and timesteps

    def latent_shape(self, batch: int, height: int, width: int) -> tuple[int, int, int, int]:
        f = self.pipe.vae_scale_factor
        return (batch, self.denoiser.config.in_channels, height // f, width // f)

    def prepare_latents(self, batch, height, width, dtype, device, generator, latents=None) -> torch.Tensor:
        """Starting latents (batch, channels, h, w): drawn with ``generator`` as the family's pipeline draws them."""
        shape = self.latent_shape(batch, height, width)
        if isinstance(generator, list) and len(generator) != batch:
            raise UserError(f"{len(generator)} generators were passed for {batch} images; pass one per image.")
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        else:
            if tuple(latents.shape) != shape:
                raise UserError(f"latents have shape {tuple(latents.shape)}; expected {shape}.")
            latents = latents.to(device=device, dtype=dtype)
        return latents * self.pipe.scheduler.init_noise_sigma

    def set_timesteps(self, steps: int, device, height: int, width: int) -> torch.Tensor:
        scheduler = self.pipe.scheduler
        scheduler.set_timesteps(steps, device=device)
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(0)
        return scheduler.timesteps

    def step_kwargs(self, generator, eta: float) -> dict:
        """Extra arguments of the scheduler's ``step`` (``eta`` for DDIM, ``generator`` for stochastic ones)."""
        params = set(inspect.signature(self.pipe.scheduler.step).parameters)
        kwargs: dict = {}
        if "eta" in params:
            kwargs["eta"] = eta
        if "generator" in params:
            kwargs["generator"] = generator
        return kwargs

    # ---- the denoiser call

    def predict(
        self, x: torch.Tensor, t, cond: Conditioning, max_batch: int | None = None, extra: dict | None = None
    ) -> torch.Tensor:
        """The denoiser's estimate for every row of ``x`` (unpacked latents, one row per conditioning row),
        in sub-batches of at most ``max_batch`` rows."""
        if not max_batch or x.shape[0] <= max_batch:
            return self._call(x, t, cond, extra or {})
        return torch.cat(
            [
                self._call(x[s : s + max_batch], t, cond.rows(s, s + max_batch), extra or {})
                for s in range(0, x.shape[0], max_batch)
            ]
        )

    def _call(self, x: torch.Tensor, t, cond: Conditioning, extra: dict) -> torch.Tensor:
        raise NotImplementedError

    # ---- h-space

    def hspace_site(self, height: int, width: int, site: str | None = None) -> HSpaceSite:
        """Where h-space directions act: the U-Net's mid block."""
        if site not in (None, "mid_block"):
            raise UserError(f"site {site!r} is a transformer block; this U-Net model's h-space is its mid block.")
        unet = self.denoiser
        return HSpaceSite("mid_block", unet.mid_block, mid_block_shape(unet, height, width, self.pipe.vae_scale_factor))

    # ---- decoding

    def from_vae(self, z: torch.Tensor) -> torch.Tensor:
        """The autoencoder's latents as the denoiser sees them: the inverse of :meth:`to_vae`."""
        config = self.pipe.vae.config
        mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
        if mean is not None and std is not None:
            mean_t = torch.tensor(mean).view(1, -1, 1, 1).to(z.device, z.dtype)
            std_t = torch.tensor(std).view(1, -1, 1, 1).to(z.device, z.dtype)
            return (z - mean_t) * config.scaling_factor / std_t
        return (z - (getattr(config, "shift_factor", None) or 0.0)) * config.scaling_factor

    def to_vae(self, latents: torch.Tensor) -> torch.Tensor:
        """Final latents to what the autoencoder decodes (its scaling, shift, or per-channel statistics)."""
        config = self.pipe.vae.config
        mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
        if mean is not None and std is not None:
            mean_t = torch.tensor(mean).view(1, -1, 1, 1).to(latents.device, latents.dtype)
            std_t = torch.tensor(std).view(1, -1, 1, 1).to(latents.device, latents.dtype)
            return latents * std_t / config.scaling_factor + mean_t
        shift = getattr(config, "shift_factor", None)
        return latents / config.scaling_factor + (shift or 0.0)
