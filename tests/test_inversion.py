"""Inversion (segakit.core.inversion) against diffusers' own implementations on small random SD components.

References: ``StableDiffusionPix2PixZeroPipeline.invert`` (DDIM inversion with pix2pix-zero's regularisation)
and ``LEditsPPPipelineStableDiffusion.invert`` (edit-friendly DDPM inversion). Tolerances: parity 1e-4 (max
|difference| of latents); round trips: DDIM inversion then DDIM sampling on the embedded model (a world render,
its gold caption, 25 steps, no regularisation) returns the latent within 0.08 mean and 0.4 max |difference|
(latents have std 0.92; the DDIM approximation evaluates the U-Net one step off); edit-friendly inversion then sampling with its noises returns it within 1e-4 (exact by construction).
"""

import copy

import pytest
import torch
from diffusers import (
    DDIMInverseScheduler,
    DDIMScheduler,
    LEditsPPPipelineStableDiffusion,
    StableDiffusionPix2PixZeroPipeline,
)
from tiny_models import sd_components

from segakit.core.conditioning import Conditioning, encode_sd
from segakit.core.inversion import (
    NoiseRegularization,
    auto_correlation_loss,
    ddim_invert,
    ddim_sample,
    ddpm_invert,
    ddpm_scheduler,
    ddpm_step,
    guided,
    kl_loss,
)

CAPTION = "a face with glasses"


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    c = sd_components(tmp_path_factory.mktemp("inv"))
    for m in (c["unet"], c["vae"], c["text_encoder"]):
        m.requires_grad_(False)
    return c


def _cond(c, text):
    return Conditioning(encode_sd(c["tokenizer"], c["text_encoder"], [text], torch.device("cpu")))


def _latents(seed=0):
    return torch.randn((1, 4, 16, 16), generator=torch.Generator().manual_seed(seed))


def _pix2pix_zero(c):
    c = dict(c, unet=copy.deepcopy(c["unet"]))  # the reference swaps the U-Net's processors for good
    pipe = StableDiffusionPix2PixZeroPipeline(
        **c, feature_extractor=None, safety_checker=None, inverse_scheduler=DDIMInverseScheduler.from_config(c["scheduler"].config),
        caption_generator=None, caption_processor=None, requires_safety_checker=False,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("regularize", [False, True], ids=["plain", "regularised"])
def test_ddim_inversion_matches_pix2pix_zero(parts, regularize):
    steps = 4
    reg = NoiseRegularization() if regularize else NoiseRegularization(0.0, 0.0)
    ref = _pix2pix_zero(parts).invert(
        CAPTION, image=_latents(), num_inference_steps=steps, generator=torch.Generator().manual_seed(3),
        lambda_auto_corr=reg.lambda_auto_corr, lambda_kl=reg.lambda_kl, output_type="latent",
    ).latents  # fmt: skip
    ours = ddim_invert(parts["unet"], parts["scheduler"].config, _latents(), _cond(parts, CAPTION), steps,
                       regularization=reg if regularize else None, generator=torch.Generator().manual_seed(3)).latents  # fmt: skip
    assert float((ours - ref).abs().max()) <= 1e-4
    plain = ddim_invert(parts["unet"], parts["scheduler"].config, _latents(), _cond(parts, CAPTION), steps).latents
    assert regularize == (float((ours - plain).abs().max()) > 1e-3)  # the regularisation does change the noise


def test_ddim_round_trip_on_the_embedded_model():
    """A trained model is needed here: a random U-Net's noise predictions are no denoiser, DDIM's one-step-off
    approximation then diverges (max error 4.5 on the small random components at 50 steps)."""
    import numpy as np
    from diffusers import StableDiffusionPipeline

    from segakit.core.loading import embedded_path
    from segakit.world.pairs import pair_at

    pipe = StableDiffusionPipeline.from_pretrained(embedded_path(), safety_checker=None, requires_safety_checker=False)
    pair = pair_at(0, 0)
    image = torch.from_numpy(np.array(pair.source_image)).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        x0 = pipe.vae.encode(image).latent_dist.mode() * pipe.vae.config.scaling_factor
    cond = Conditioning(encode_sd(pipe.tokenizer, pipe.text_encoder, [pair.source_caption], torch.device("cpu")))
    errors = {}
    for steps in (10, 25):
        inv = ddim_invert(pipe.unet, pipe.scheduler.config, x0, cond, steps)
        assert len(inv.trajectory) == steps + 1 and inv.latents.shape == x0.shape
        back = ddim_sample(pipe.unet, pipe.scheduler.config, inv.latents, cond, steps)
        errors[steps] = (float((back - x0).abs().mean()), float((back - x0).abs().max()))
        assert float((inv.latents - x0).abs().mean()) > 0.5  # it did go somewhere
    assert errors[25][0] <= 0.08 and errors[25][1] <= 0.4  # measured 0.050 / 0.229 (latent std 0.92)
    assert errors[25][0] < errors[10][0]  # more steps, closer


def test_regularisation_lowers_both_losses():
    noise = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    correlated = noise + torch.roll(noise, 1, dims=2) + 0.5  # smooth and off-centre
    from segakit.core.inversion import regularize

    out = regularize(
        correlated,
        torch.zeros_like(correlated),
        0.5,
        "epsilon",
        NoiseRegularization(),
        torch.Generator().manual_seed(0),
    )
    g = torch.Generator().manual_seed(1)
    before = auto_correlation_loss(correlated, g)
    g = torch.Generator().manual_seed(1)
    assert float(auto_correlation_loss(out, g)) < float(before)
    assert float(kl_loss(out)) < float(kl_loss(correlated))
    assert abs(float(kl_loss(torch.randn(1, 4, 64, 64)))) < 0.01  # white noise: KL about 0


class _IntegerTimestepsDDIM(DDIMScheduler):
    """LEDITS++'s invert hands ``add_noise`` float timesteps (``torch.Tensor([t])``), which this torch refuses as an
    index (IndexError in diffusers' DDIMScheduler.add_noise): the reference runs with them cast to integers."""

    def add_noise(self, original_samples, noise, timesteps):
        return super().add_noise(original_samples, noise, timesteps.long())


@pytest.mark.parametrize("source", ["", CAPTION], ids=["no-caption", "caption"])
def test_edit_friendly_inversion_matches_ledits_pp_and_reconstructs(parts, source):
    """With a source caption, diffusers' LEditsPPPipelineStableDiffusion.invert (0.42) unpacks encode_prompt's
    (edit, unconditional) embeddings as (unconditional, text): its guidance points from the caption towards the
    empty prompt. segakit guides towards the caption (as the paper's eq. 4 and the official LEDITS++ code do);
    the parity check hands the reference's order to segakit's function explicitly."""
    steps, skip, scale = 6, 0.15, 3.5
    scheduler = _IntegerTimestepsDDIM.from_config(parts["scheduler"].config)
    ref = LEditsPPPipelineStableDiffusion(
        **dict(parts, scheduler=scheduler), safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    ref.set_progress_bar_config(disable=True)
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    ref.invert(image, source_prompt=source, source_guidance_scale=scale, num_inversion_steps=steps, skip=skip,
               generator=torch.Generator().manual_seed(7))  # fmt: skip
    x0 = parts["vae"].encode(image * 2 - 1).latent_dist.mode() * parts["vae"].config.scaling_factor
    cond, uncond = _cond(parts, source), _cond(parts, "")
    as_reference = (uncond, cond) if source else (cond, uncond)
    inv = ddpm_invert(
        parts["unet"],
        parts["scheduler"].config,
        x0,
        *as_reference,
        steps,
        scale if source else 1.0,
        skip,
        torch.Generator().manual_seed(7),
    )
    assert float((inv.noises - ref.zs).abs().max()) <= 1e-4
    assert float((inv.latents - ref.init_latents).abs().max()) <= 1e-4
    assert list(inv.timesteps) == list(ref.inversion_steps)

    inv = ddpm_invert(
        parts["unet"], parts["scheduler"].config, x0, cond, uncond, steps, scale, skip, torch.Generator().manual_seed(7)
    )
    scheduler, timesteps = ddpm_scheduler(parts["scheduler"].config, steps, skip)
    x = inv.latents
    for i, t in enumerate(timesteps):
        x = ddpm_step(scheduler, guided(parts["unet"], x, t, cond, uncond, scale), t, x, inv.noises[i])
    assert float((x - x0).abs().max()) <= 1e-4
