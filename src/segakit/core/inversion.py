"""Inverting an image's latent to noise: DDIM inversion (with pix2pix-zero's noise regularisation) and the
edit-friendly DDPM inversion that LEDITS++ uses.

DDIM inversion runs diffusers' ``DDIMInverseScheduler`` from the clean latent up to the last timestep, the U-Net
conditioned on a caption (guidance 1 in pix2pix-zero and Pix2Pix-OnTheFly). Running DDIM back down with the same
caption returns (approximately) the image. pix2pix-zero's regularisation pushes each step's noise prediction
towards white Gaussian noise: gradient steps on an auto-correlation loss (random spatial rolls, over an image
pyramid) and a KL loss to N(0, 1) (Parmar et al. 2023, Sec. 3.1).

Edit-friendly DDPM inversion (Huberman-Spiegelglas et al. 2024, used by LEDITS++): draw each x_t independently
from q(x_t | x_0), then solve for the noise z_t that makes the DDPM step (DDIM with eta = 1) land exactly on
x_{t-1}. Sampling with those z_t and the same conditioning reproduces x_0 exactly; edits keep the structure the
z_t carry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from segakit.core.conditioning import Conditioning


@dataclass
class NoiseRegularization:
    """pix2pix-zero's regularisation of the inverted noise (its defaults: lambda 20, 5 iterations, 5 rolls)."""

    lambda_auto_corr: float = 20.0
    lambda_kl: float = 20.0
    iterations: int = 5
    rolls: int = 5


@dataclass
class DDIMInversion:
    latents: torch.Tensor  # the inverted noise x_T
    trajectory: list[torch.Tensor]  # x_0 (the input) .. x_T, one per step boundary
    timesteps: torch.Tensor  # the inverse scheduler's timesteps (ascending)


@dataclass
class EditFriendlyInversion:
    latents: torch.Tensor  # x_T at the first sampling timestep
    noises: torch.Tensor  # z_t, (steps, *latent shape), in sampling order (first row: the first sampling step)
    timesteps: torch.Tensor  # the sampling timesteps (descending)
    num_train_steps: int  # the scheduler's set_timesteps count (steps * (1 + skip))
    targets: torch.Tensor | None = None  # (steps, *latent shape): the latent each sampling step lands on (x_0 last)


def epsilon(
    model_output: torch.Tensor, sample: torch.Tensor, alpha_prod: torch.Tensor | float, prediction_type: str
) -> torch.Tensor:
    """The noise that ``model_output`` implies, for epsilon-, sample- and v-prediction models."""
    a = torch.as_tensor(alpha_prod, dtype=sample.dtype, device=sample.device)
    if prediction_type == "epsilon":
        return model_output
    if prediction_type == "sample":  # x_t = sqrt(a) x_0 + sqrt(1 - a) eps
        return (sample - a.sqrt() * model_output) / (1 - a).sqrt()
    if prediction_type == "v_prediction":  # v = sqrt(a) eps - sqrt(1 - a) x_0
        return a.sqrt() * model_output + (1 - a).sqrt() * sample
    raise ValueError(f"prediction_type {prediction_type!r} is not one of epsilon, sample, v_prediction.")


def auto_correlation_loss(noise: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """pix2pix-zero's pairwise term: squared mean of noise * rolled noise, per channel, along both spatial axes,
    on every level of an average-pooled pyramid down to 8 x 8 (one random roll per level)."""
    loss = noise.new_zeros(())
    for i in range(noise.shape[0]):
        for c in range(noise.shape[1]):
            level = noise[i : i + 1, c : c + 1]
            while True:
                shift = int(torch.randint(level.shape[2] // 2, (1,), generator=generator).item())
                loss = loss + (level * torch.roll(level, shifts=shift, dims=2)).mean() ** 2
                loss = loss + (level * torch.roll(level, shifts=shift, dims=3)).mean() ** 2
                if level.shape[2] <= 8:
                    break
                level = torch.nn.functional.avg_pool2d(level, kernel_size=2)
    return loss


def kl_loss(noise: torch.Tensor) -> torch.Tensor:
    """KL divergence of N(mean, var) of all entries to N(0, 1), up to a factor 2: var + mean^2 - 1 - log var."""
    mean, var = noise.mean(), noise.var()
    return var + mean**2 - 1 - torch.log(var + 1e-7)


def regularize(
    model_output: torch.Tensor, sample: torch.Tensor, alpha_prod, prediction_type: str,
    reg: NoiseRegularization, generator: torch.Generator | None = None,
) -> torch.Tensor:  # fmt: skip
    """``reg.iterations`` rounds of gradient steps on the model output: ``rolls`` auto-correlation steps (each
    1/rolls of the gradient) and one KL step, both on the implied noise."""
    out = model_output.detach()
    with torch.enable_grad():
        for _ in range(reg.iterations):
            if reg.lambda_auto_corr > 0:
                for _ in range(reg.rolls):
                    var = out.detach().clone().requires_grad_(True)
                    auto_correlation_loss(
                        epsilon(var, sample.detach(), alpha_prod, prediction_type), generator
                    ).backward()
                    out = out - reg.lambda_auto_corr * var.grad / reg.rolls
            if reg.lambda_kl > 0:
                var = out.detach().clone().requires_grad_(True)
                kl_loss(epsilon(var, sample.detach(), alpha_prod, prediction_type)).backward()
                out = out - reg.lambda_kl * var.grad
            out = out.detach()
    return out


def guided(unet, x: torch.Tensor, t, cond: Conditioning, uncond: Conditioning | None, scale: float) -> torch.Tensor:
    """The U-Net's output at ``x``, with classifier-free guidance ``scale`` when ``uncond`` is given and scale != 1."""
    if uncond is None or scale == 1.0:
        return unet(x, t, **cond.unet_kwargs()).sample
    both = Conditioning.cat([uncond, cond])
    out_u, out_c = unet(torch.cat([x, x]), t, **both.unet_kwargs()).sample.chunk(2)
    return out_u + scale * (out_c - out_u)


@torch.no_grad()
def ddim_invert(
    unet, scheduler_config, latents: torch.Tensor, cond: Conditioning, steps: int,
    guidance_scale: float = 1.0, uncond: Conditioning | None = None,
    regularization: NoiseRegularization | None = None, generator: torch.Generator | None = None,
    callback: Callable[[int], None] | None = None,
) -> DDIMInversion:  # fmt: skip
    """DDIM inversion of ``latents`` (scaled VAE latents) over ``steps`` steps of diffusers' ``DDIMInverseScheduler``."""
    from diffusers import DDIMInverseScheduler

    inverse = DDIMInverseScheduler.from_config(scheduler_config)
    inverse.set_timesteps(steps, device=latents.device)
    prediction_type = inverse.config.prediction_type
    x = latents
    trajectory = [x]
    for i, t in enumerate(inverse.timesteps):
        model_in = inverse.scale_model_input(x, t)
        out = guided(unet, model_in, t, cond, uncond, guidance_scale)
        if regularization is not None:
            out = regularize(out, model_in, inverse.alphas_cumprod[int(t)], prediction_type, regularization, generator)
        x = inverse.step(out, t, x).prev_sample
        trajectory.append(x)
        if callback is not None:
            callback(i)
    return DDIMInversion(x, trajectory, inverse.timesteps)


@torch.no_grad()
def ddim_sample(
    unet, scheduler_config, latents: torch.Tensor, cond: Conditioning, steps: int,
    guidance_scale: float = 1.0, uncond: Conditioning | None = None,
) -> torch.Tensor:  # fmt: skip
    """Plain deterministic DDIM from ``latents`` (the inverse of :func:`ddim_invert` up to its approximation)."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(scheduler_config)
    scheduler.set_timesteps(steps, device=latents.device)
    x = latents
    for t in scheduler.timesteps:
        x = scheduler.step(
            guided(unet, scheduler.scale_model_input(x, t), t, cond, uncond, guidance_scale), t, x
        ).prev_sample
    return x


def ddpm_scheduler(scheduler_config, steps: int, skip: float = 0.0):
    """A DDIM scheduler ("leading" spacing) set to ``int(steps * (1 + skip))`` steps, and the last ``steps`` of them."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(scheduler_config, timestep_spacing="leading")
    scheduler.set_timesteps(int(steps * (1 + skip)))
    return scheduler, scheduler.timesteps[-steps:]


def posterior_mean(scheduler, x: torch.Tensor, t: int, model_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, sigma) of the DDPM step x_t -> x_{t-1} (DDIM with eta = 1, DDIM paper eq. 12 and 16)."""
    prev = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    a_t = scheduler.alphas_cumprod[t]
    a_prev = scheduler.alphas_cumprod[prev] if prev >= 0 else scheduler.final_alpha_cumprod
    eps = epsilon(model_output, x, a_t, scheduler.config.prediction_type)
    x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    sigma = ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).sqrt()
    mu = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).sqrt() * eps
    return mu, sigma


@torch.no_grad()
def ddpm_invert(
    unet, scheduler_config, latents: torch.Tensor, cond: Conditioning, uncond: Conditioning, steps: int,
    guidance_scale: float = 3.5, skip: float = 0.15, generator: torch.Generator | None = None,
    callback: Callable[[int], None] | None = None,
) -> EditFriendlyInversion:  # fmt: skip
    """Edit-friendly DDPM inversion of ``latents`` over the last ``steps`` of ``steps * (1 + skip)`` timesteps.

    The x_t are drawn from the lowest timestep up (the order LEDITS++ draws them, so one generator gives the
    same noises); ``guidance_scale`` applies to ``cond`` against ``uncond`` (an empty caption: no guidance).
    """
    scheduler, timesteps = ddpm_scheduler(scheduler_config, steps, skip)
    xs = [None] * steps  # xs[i]: the noisy latent at timesteps[i]
    for i in range(steps - 1, -1, -1):
        noise = torch.randn(latents.shape, generator=generator, dtype=latents.dtype, device=torch.device("cpu")).to(
            latents.device
        )
        xs[i] = scheduler.add_noise(latents, noise, timesteps[i : i + 1])
    noises = torch.zeros((steps, *latents.shape), dtype=latents.dtype, device=latents.device)
    for i, t in enumerate(timesteps):
        out = guided(unet, xs[i], t, cond, uncond, guidance_scale)
        mu, sigma = posterior_mean(scheduler, xs[i], int(t), out)
        target = xs[i + 1] if i + 1 < steps else latents
        noises[i] = (target - mu) / sigma if sigma > 0 else torch.zeros_like(mu)
        if i + 1 < steps:
            xs[i + 1] = mu + sigma * noises[i]  # the corrected x_{t-1}: no error accumulates
        if callback is not None:
            callback(i)
    targets = torch.stack([*xs[1:], latents])
    return EditFriendlyInversion(xs[0], noises, timesteps, int(steps * (1 + skip)), targets)


def ddpm_step(scheduler, model_output: torch.Tensor, t, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """One sampling step with a stored edit-friendly noise: x_{t-1} = mu + sigma z."""
    mu, sigma = posterior_mean(scheduler, x, int(t), model_output)
    return mu + sigma * noise
