"""SegaPipeline on SD3 and FLUX equals diffusers' own pipelines without edits, and its edits act."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import FluxPipeline, StableDiffusion3Pipeline
from tiny_flow_models import flux_components, sd3_components

from segakit import Edit, SegaPipeline
from segakit.core.families.flux import pack, unpack
from segakit.sega.flow_pipelines import SegaFluxPipeline, SegaSD3Pipeline

PROMPT = "a face with glasses"


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _same(a, b, tol: float = 1e-4) -> None:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    assert np.abs(a - b).max() <= tol, np.abs(a - b).max()


@pytest.fixture(scope="module")
def sd3(tmp_path_factory):
    reference = StableDiffusion3Pipeline(**sd3_components(tmp_path_factory.mktemp("sd3")))
    reference.set_progress_bar_config(disable=True)
    ours = SegaPipeline.from_pipe(reference)
    ours.set_progress_bar_config(disable=True)
    return reference, ours


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    reference = FluxPipeline(**flux_components(tmp_path_factory.mktemp("flux")))
    reference.set_progress_bar_config(disable=True)
    ours = SegaPipeline.from_pipe(reference)
    ours.set_progress_bar_config(disable=True)
    return reference, ours


def test_from_pipe_picks_the_family_class(sd3, flux):
    assert type(sd3[1]) is SegaSD3Pipeline and sd3[1].family.name == "sd3"
    assert type(flux[1]) is SegaFluxPipeline and flux[1].family.name == "flux"
    assert sd3[1].transformer is sd3[0].transformer  # shared, not copied


@pytest.mark.parametrize("guidance_scale", [7.0, 1.0])
def test_sd3_equals_diffusers_at_its_defaults(sd3, guidance_scale):
    reference, ours = sd3
    kwargs = dict(num_inference_steps=3, guidance_scale=guidance_scale, output_type="np")
    want = reference(PROMPT, generator=_gen(), **kwargs).images
    got = ours(PROMPT, generator=_gen(), **kwargs).images
    assert got.shape == (1, 32, 32, 3)  # the family's default size: sample_size x vae factor
    _same(got, want)


def test_sd3_negative_prompt_and_several_images(sd3):
    reference, ours = sd3
    kwargs = dict(num_inference_steps=2, negative_prompt="a hat", num_images_per_prompt=2, output_type="latent")
    _same(ours(PROMPT, generator=_gen(3), **kwargs).images, reference(PROMPT, generator=_gen(3), **kwargs).images)


def test_sd3_with_t5_equals_diffusers(tmp_path):
    reference = StableDiffusion3Pipeline(**sd3_components(tmp_path, with_t5=True))
    reference.set_progress_bar_config(disable=True)
    ours = SegaPipeline.from_pipe(reference)
    kwargs = dict(num_inference_steps=2, output_type="latent", max_sequence_length=12)
    _same(ours(PROMPT, generator=_gen(), **kwargs).images, reference(PROMPT, generator=_gen(), **kwargs).images)


@pytest.mark.parametrize("true_cfg", [False, True])
def test_flux_equals_diffusers(flux, true_cfg):
    reference, ours = flux
    kwargs = dict(num_inference_steps=3, height=32, width=32, max_sequence_length=32, output_type="np")
    if true_cfg:
        kwargs.update(negative_prompt="a hat", true_cfg_scale=2.5)
    want = reference(PROMPT, generator=_gen(), **kwargs).images
    got = ours(PROMPT, generator=_gen(), **kwargs).images
    _same(got, want)


def test_flux_schnell_shape_equals_diffusers(tmp_path):
    reference = FluxPipeline(**flux_components(tmp_path, guidance_embeds=False))
    reference.set_progress_bar_config(disable=True)
    ours = SegaPipeline.from_pipe(reference)
    kwargs = dict(
        num_inference_steps=2, height=32, width=32, max_sequence_length=32, guidance_scale=0.0, output_type="latent"
    )
    got = ours(PROMPT, generator=_gen(), **kwargs).images
    assert got.shape == (1, 4, 16, 16)  # segakit's latents are unpacked on every family; diffusers' FLUX packs them
    _same(pack(got), reference(PROMPT, generator=_gen(), **kwargs).images)


@pytest.mark.parametrize("negative", [None, "a hat"])
def test_flux_edits_act_with_and_without_true_cfg(flux, negative):
    _, ours = flux
    kwargs = dict(num_inference_steps=3, height=32, width=32, max_sequence_length=32, output_type="latent")
    if negative:
        kwargs.update(negative_prompt=negative, true_cfg_scale=2.0)
    plain = ours(PROMPT, generator=_gen(), **kwargs).images
    edited = ours(PROMPT, generator=_gen(), edits=[Edit("beard", scale=5, threshold=0.5, warmup=0)], **kwargs).images
    assert (plain - edited).abs().max() > 1e-3


def test_sd3_edits_act_and_reverse_differs(sd3):
    _, ours = sd3
    kwargs = dict(num_inference_steps=3, output_type="latent")
    plain = ours(PROMPT, generator=_gen(), **kwargs).images
    add = ours(PROMPT, generator=_gen(), edits=[Edit("beard", scale=5, threshold=0.5, warmup=0)], **kwargs).images
    remove = ours(
        PROMPT, generator=_gen(), edits=[Edit("beard", scale=5, threshold=0.5, warmup=0, reverse=True)], **kwargs
    ).images
    assert (plain - add).abs().max() > 1e-3 and (add - remove).abs().max() > 1e-3


def test_sd3_folder_without_t5_loads(sd3, tmp_path):
    reference, _ = sd3
    reference.save_pretrained(tmp_path / "sd3", safe_serialization=True)
    loaded = SegaPipeline.from_pretrained(tmp_path / "sd3")
    assert type(loaded) is SegaSD3Pipeline and loaded.text_encoder_3 is None
    loaded.set_progress_bar_config(disable=True)
    kwargs = dict(num_inference_steps=2, output_type="latent")
    _same(loaded(PROMPT, generator=_gen(), **kwargs).images, reference(PROMPT, generator=_gen(), **kwargs).images)


def test_pack_and_unpack_are_inverse():
    x = torch.randn(2, 4, 6, 8)
    tokens = pack(x)
    assert tokens.shape == (2, 12, 16)
    assert torch.equal(unpack(tokens, 6, 8), x)
    assert torch.equal(
        tokens[0, 1, :4], x[0, 0, 0:2, 2:4].reshape(-1)
    )  # token 1 is the 2x2 patch at row 0, columns 2-3


def test_flux_thresholds_are_per_latent_channel_over_the_image(flux):
    """A concept's guidance keeps, per image and latent channel, the top (1 - threshold) of |psi| over the
    unpacked image: SEGA's definition, not a quantile per packed token."""
    _, ours = flux
    kwargs = dict(
        num_inference_steps=2, height=32, width=32, max_sequence_length=32, output_type="latent", record_guidance=True
    )
    out = ours(PROMPT, generator=_gen(), edits=[Edit("beard", scale=5, threshold=0.75, warmup=0, cooldown=1)], **kwargs)
    gamma = out.guidance.guidance[0]  # step 0: the concept alone, no momentum yet
    kept = (gamma != 0).flatten(start_dim=2).sum(-1)  # (batch, channels): 25% of 16 x 16 per channel
    assert kept.tolist() == [[64, 64, 64, 64]]


def test_per_token_quantile_of_packed_latents_is_not_segas_threshold():
    """diffusers' community FLUX SEGA pipeline takes the quantile over dim 2 of the packed latents (per token,
    over its 64 packed channels); SEGA's threshold (segakit's) is per latent channel over the image. On the same
    direction they keep different elements: per token, every token keeps the same share; per channel, a region
    where the concept acts keeps all of its elements."""
    from segakit.sega.guidance import keep_tails

    torch.manual_seed(0)
    psi = torch.randn(1, 16, 8, 8) * 0.1
    psi[..., :2, :2] += 3.0  # the concept acts in one corner (2 x 2 latent pixels = one packed token)
    ours = keep_tails(psi, 0.9, "channel")
    packed = pack(psi)
    eta = torch.quantile(packed.abs(), 0.9, dim=2, keepdim=True)
    theirs = unpack(torch.where(packed.abs() >= eta, packed, torch.zeros_like(packed)), 8, 8)
    assert (ours[..., :2, :2] != 0).all()  # the whole corner in every channel
    assert (theirs != 0).float().mean() > (ours != 0).float().mean() - 0.01  # same overall share ...
    assert (theirs[..., :2, :2] != 0).float().mean() < 0.2  # ... but per token: 10% of the corner's token
    assert not torch.equal(ours != 0, theirs != 0)


@pytest.mark.parametrize("kwargs,match", [
    ({"negative_prompt": "a hat"}, "only under true CFG"),
    ({"true_cfg_scale": 3.0}, "needs a negative_prompt"),
])  # fmt: skip
def test_flux_refuses_what_would_silently_do_nothing(flux, kwargs, match):
    from segakit.core.errors import UserError

    with pytest.raises(UserError, match=match):
        flux[1](PROMPT, num_inference_steps=1, height=32, width=32, **kwargs)


def test_true_cfg_scale_is_refused_off_flux(sd3):
    from segakit.core.errors import UserError

    with pytest.raises(UserError, match="for FLUX models"):
        sd3[1](PROMPT, num_inference_steps=1, true_cfg_scale=2.0)


def test_sd3_lora_loads_through_diffusers_family_loader(tmp_path):
    """A LoRA saved by diffusers' SD3 loader loads into SegaSD3Pipeline (same modules) and gives diffusers' image."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    parts = sd3_components(tmp_path / "parts")
    torch.manual_seed(5)
    parts["transformer"].add_adapter(
        LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v"], init_lora_weights=False)
    )
    layers = get_peft_model_state_dict(parts["transformer"])
    StableDiffusion3Pipeline.save_lora_weights(
        tmp_path / "lora", transformer_lora_layers=layers, safe_serialization=True
    )
    fresh = sd3_components(tmp_path / "parts2")
    reference = StableDiffusion3Pipeline(**fresh)
    reference.set_progress_bar_config(disable=True)
    plain = reference(PROMPT, num_inference_steps=2, output_type="latent", generator=_gen()).images
    ours = SegaPipeline.from_pipe(reference)
    ours.set_progress_bar_config(disable=True)
    ours.load_lora_weights(tmp_path / "lora" / "pytorch_lora_weights.safetensors", adapter_name="style")
    got = ours(PROMPT, num_inference_steps=2, output_type="latent", generator=_gen()).images
    want = reference(PROMPT, num_inference_steps=2, output_type="latent", generator=_gen()).images  # same modules
    _same(got, want)
    assert (got - plain).abs().max() > 1e-4  # the LoRA acts


def test_sd3_without_t5_counts_its_zero_rows_instead_of_computing_them(sd3):
    """The 256 zero T5 rows enter the transformer as one counted row (core.families.counted_rows), and the
    image still equals diffusers', which computes all of them."""
    reference, ours = sd3
    seen = []
    hook = ours.transformer.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(kwargs["encoder_hidden_states"].shape[1]), with_kwargs=True
    )
    kwargs = dict(num_inference_steps=2, output_type="latent")
    try:
        got = ours(PROMPT, generator=_gen(5), **kwargs).images
    finally:
        hook.remove()
    full = seen[0] + 255  # diffusers' rows: the CLIP rows and 256 zero rows
    want_seen = []
    hook = reference.transformer.register_forward_pre_hook(
        lambda m, args, kwargs: want_seen.append(kwargs["encoder_hidden_states"].shape[1]), with_kwargs=True
    )
    try:
        want = reference(PROMPT, generator=_gen(5), **kwargs).images
    finally:
        hook.remove()
    assert want_seen[0] == full and set(seen) == {full - 255}
    _same(got, want)
    from diffusers.models.attention_processor import JointAttnProcessor2_0

    assert all(type(b.attn.processor) is JointAttnProcessor2_0 for b in ours.transformer.transformer_blocks)
