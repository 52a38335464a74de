"""The cross-attention guided editor of pix2pix-zero, as Pix2Pix-OnTheFly runs it.

From the inverted noise x_T:

1. reference pass: DDIM with classifier-free guidance over [negative, source caption] (the negative is the
   source caption itself in Pix2Pix-OnTheFly, so this pass reconstructs the image); every cross-attention map
   of every step is stored;
2. edit pass: from the same x_T, the conditional embedding moved along the edit direction; at each step one
   gradient step (SGD, lr ``xa_guidance`` = 0.15) on the U-Net input towards the reference maps
   (loss: sum over queries and tokens of the squared difference, mean over heads and rows, summed over layers),
   then the guided noise prediction at the moved input, and the DDIM step from the first (negative) row's moved
   latent, exactly as pix2pix-zero's code steps. ``xa_guidance`` 0 skips that step's forward and backward pass:
   plain guided DDIM sampling along the direction.

Works on any SD 1.x/2.x/SDXL-shaped U-Net (the maps come from :class:`segakit.core.attention.CrossAttentionCapture`).

:func:`edit_on_ddpm_inversion` is segakit's faster variant (``--inversion ddpm``): the same edit direction and the
same guidance (the source caption as the negative), sampled with the noises of an edit-friendly DDPM inversion
(:func:`segakit.core.inversion.ddpm_invert`, conditioned on the source caption) instead of from a DDIM-inverted
x_T. The stored noises hold the image's layout, so no reference pass and no cross-attention guidance are needed;
with a zero direction the image comes back exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from segakit.core.attention import CrossAttentionCapture
from segakit.core.conditioning import Conditioning
from segakit.core.inversion import EditFriendlyInversion, ddpm_scheduler, ddpm_step
from segakit.editing.blend import blend_step
from segakit.editing.direction import EditDirection
from segakit.editing.ledits import noise_mask


@dataclass
class CrossAttentionEdit:
    """The edit pass's result: edited and reconstructed latents, and the loss of each step."""

    latents: torch.Tensor
    reconstruction: torch.Tensor
    losses: list[float]


def cfg(out_negative: torch.Tensor, out_cond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: e_neg + s (e_cond - e_neg)."""
    return out_negative + scale * (out_cond - out_negative)


def edit_with_cross_attention_guidance(
    unet, scheduler_config, x_t: torch.Tensor, source: Conditioning, negative: Conditioning, direction: EditDirection,
    steps: int, guidance_scale: float = 5.0, xa_guidance: float = 0.15, direction_scale: float = 1.0,
    callback: Callable[[int], None] | None = None,
) -> CrossAttentionEdit:  # fmt: skip
    """Reference pass then guided edit pass from ``x_t`` (1 image); see the module docs."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(scheduler_config)
    scheduler.set_timesteps(steps, device=x_t.device)
    reference_rows = Conditioning.cat([negative, source])
    edit_rows = Conditioning.cat([negative, direction.add_to(source, direction_scale)])
    losses: list[float] = []
    with CrossAttentionCapture(unet) as capture:
        x = x_t
        with torch.no_grad():
            for i, t in enumerate(scheduler.timesteps):
                capture.record(i, reference=True)
                model_in = scheduler.scale_model_input(torch.cat([x, x]), t)
                out_n, out_c = unet(model_in, t, **reference_rows.unet_kwargs()).sample.chunk(2)
                x = scheduler.step(cfg(out_n, out_c, guidance_scale), t, x).prev_sample
                if callback is not None:
                    callback(i)
        reconstruction = x

        scheduler.set_timesteps(steps, device=x_t.device)
        x = x_t
        for i, t in enumerate(scheduler.timesteps):
            model_in = scheduler.scale_model_input(torch.cat([x, x]), t).detach()
            if xa_guidance:  # a step of 0 moves nothing: skip its forward and backward pass
                model_in.requires_grad_(True)
                capture.match(i)
                with torch.enable_grad():
                    unet(model_in, t, **edit_rows.unet_kwargs())
                    loss = capture.loss
                    (grad,) = torch.autograd.grad(loss, model_in)
                losses.append(float(loss.detach()))
                model_in = (model_in - xa_guidance * grad).detach()
            moved = model_in
            capture.off()
            with torch.no_grad():
                out_n, out_c = unet(moved, t, **edit_rows.unet_kwargs()).sample.chunk(2)
                x = scheduler.step(cfg(out_n, out_c, guidance_scale), t, moved.chunk(2)[0]).prev_sample
            if callback is not None:
                callback(steps + i)
    capture.reference.clear()
    return CrossAttentionEdit(x, reconstruction, losses)


@torch.no_grad()
def edit_on_ddpm_inversion(
    unet, scheduler_config, inversion: EditFriendlyInversion, source: Conditioning, direction: EditDirection,
    skip: float, guidance_scale: float = 3.5, direction_scale: float = 1.0, mask: float = 0.0, blend: bool = False,
    callback: Callable[[int], None] | None = None, blend_dilate: int = 0,
) -> torch.Tensor:  # fmt: skip
    """Sample from ``inversion`` (made with ``source`` at guidance 1 and ``skip``) along ``direction``: at each step
    e = e(source) + s m (e(source + direction) - e(source)), then the DDPM step with the step's stored noise.

    m is 1 everywhere when ``mask`` is 0; otherwise LEDITS++'s noise mask (its eq. 7) of the direction's change at
    that step: 1 where the change's absolute value, summed over channels, reaches its ``mask`` quantile. Outside the
    mask the step is the inversion's own, so those pixels come back nearly as they were; ``blend``
    (:mod:`segakit.editing.blend`) holds them on the inversion's trajectory, so they come back exactly (outside the
    masks grown by ``blend_dilate`` latent pixels)."""
    steps = len(inversion.timesteps)
    scheduler, timesteps = ddpm_scheduler(scheduler_config, steps, skip)
    kwargs = Conditioning.cat([source, direction.add_to(source, direction_scale)]).unet_kwargs()
    x, region = inversion.latents, None
    for i, t in enumerate(timesteps):
        out_s, out_e = unet(torch.cat([x, x]), t, **kwargs).sample.chunk(2)
        change = out_e - out_s
        if mask > 0:
            edited = noise_mask(change, mask)
            change = change * edited
        x = ddpm_step(scheduler, out_s + guidance_scale * change, t, x, inversion.noises[i])
        if blend and mask > 0:  # unmasked, the edit's region is everywhere: nothing to hold
            x, region = blend_step(x, inversion, i, edited, region, blend_dilate)
        if callback is not None:
            callback(i)
    return x
