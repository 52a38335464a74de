"""Self-discovered directions on SD3 and FLUX transformers: learned at a joint block's image tokens, recorded in
the file, applied, saved, reloaded and refused on other models and sites."""

from __future__ import annotations

import pytest
import torch
from diffusers import FluxPipeline, StableDiffusion3Pipeline
from tiny_flow_models import flow_pipe, flux_components, sd3_components

from segakit.core.errors import UserError
from segakit.core.hooks import BlockShift
from segakit.directions import Direction
from segakit.directions.learn import LearnConfig, learn_direction


@pytest.fixture(scope="module")
def sd3(tmp_path_factory):
    return flow_pipe(StableDiffusion3Pipeline, sd3_components(tmp_path_factory.mktemp("sd3")))


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    return flow_pipe(FluxPipeline, flux_components(tmp_path_factory.mktemp("flux")))


def _run(pipe, **kw):
    extra = {"height": 32, "width": 32, "max_sequence_length": 32} if pipe.family.name == "flux" else {}
    return pipe(
        "a face", num_inference_steps=2, output_type="latent", generator=torch.Generator().manual_seed(0), **extra, **kw
    ).images


def test_block_shift_adds_to_image_tokens_only(sd3):
    site = sd3.family.hspace_site(32, 32)
    assert site.name == "transformer_blocks.0" and site.shape == (64, 32)  # 16x16 latents, patch 2; width 4 heads x 8
    seen = []

    def run(deltas):
        with BlockShift(site.module) as shift:
            handle = site.module.register_forward_hook(lambda m, a, out: seen.append(out) and None)  # after the shift
            try:
                shift.set(deltas)
                sd3(
                    "a face", num_inference_steps=1, output_type="latent", generator=torch.Generator().manual_seed(0)
                )  # 2 rows
            finally:
                handle.remove()

    run(torch.stack([torch.zeros(site.shape), torch.ones(site.shape)]))
    run(None)  # nothing set: unchanged
    (text, shifted), (text0, plain) = seen
    assert shifted.shape[1:] == site.shape
    assert torch.allclose(shifted[0], plain[0]) and torch.allclose(shifted[1], plain[1] + 1)  # image tokens, prompt row
    assert torch.equal(text, text0)  # the text tokens are left alone (block 0 still returns them)


@pytest.mark.parametrize("name", ["sd3", "flux"])
def test_learn_apply_save_reload_refuse(name, sd3, flux, tmp_path):
    pipe = {"sd3": sd3, "flux": flux}[name]
    cfg = LearnConfig(name="glasses", positive="a face with glasses", neutral="a face", images=2, steps=3, batch=2,
                      gen_steps=2, gen_batch=2, height=32, width=32)  # fmt: skip
    direction = learn_direction(pipe, cfg, tmp_path / "cache")
    site = pipe.family.hspace_site(32, 32)
    assert direction.site == site.name and direction.shape == site.shape
    assert direction.meta["denoiser"] and direction.meta["final_loss"] > 0
    assert direction.vector.abs().sum() > 0  # Adam moved it
    plain, zero, moved = (
        _run(pipe),
        _run(pipe, directions=[direction.at(0.0)]),
        _run(pipe, directions=[direction.at(50.0)]),
    )
    assert torch.equal(plain, zero) and (plain - moved).abs().max() > 1e-4
    again = Direction.load(direction.save(tmp_path / "d.safetensors"))
    assert again.site == direction.site and torch.equal(again.vector, direction.vector)
    again.check_model(pipe.family.denoiser)
    other = {"sd3": flux, "flux": sd3}[name]
    with pytest.raises(UserError, match="transformer weights"):
        again.check_model(other.family.denoiser)


def test_a_unet_direction_is_refused_on_a_transformer(sd3):
    unet_direction = Direction(torch.zeros(64, 4, 4), "x", {"site": "mid_block"})
    with pytest.raises(UserError, match="U-Net's"):
        _run(sd3, directions=[unet_direction.at(1.0)])


def test_other_block_is_a_choice_and_out_of_range_is_refused(sd3):
    assert sd3.family.hspace_site(32, 32, "transformer_blocks.0").module is sd3.transformer.transformer_blocks[0]
    with pytest.raises(UserError, match="not one of this transformer's 2 blocks"):
        sd3.family.hspace_site(32, 32, "transformer_blocks.5")


def test_directions_study_runs_on_a_transformer_without_sld(sd3, tmp_path):
    """The directions study's safety section on a flow model: the anti-horror direction, the negative prompt and
    SEGA's reverse edit are measured; SLD (diffusers' safe pipeline runs U-Nets only) is left out, and said so."""
    import json

    from segakit.core.fingerprint import fingerprint
    from segakit.directions.library import Library
    from segakit.eval.directions_study import DirectionsStudyConfig, run_study
    from segakit.world.oracle import Oracle, OracleNet

    site = sd3.family.hspace_site(32, 32)
    (tmp_path / "lib").mkdir()
    d = Direction(torch.randn(site.shape, generator=torch.Generator().manual_seed(0)), "horror=false",
                  {"denoiser": fingerprint(sd3.family.denoiser), "site": site.name})  # fmt: skip
    files = {"horror=false": d.save(tmp_path / "lib" / "horror-false.safetensors").name}
    (tmp_path / "lib" / "library.json").write_text(json.dumps({"directions": files, "strength": 0.5}))
    library = Library.load(tmp_path / "lib")
    library.check_model(sd3.family.denoiser)
    cfg = DirectionsStudyConfig(seeds=2, steps=2, batch=2, sections=("safety",), horror_prompts=("a zombie",),
                                clean_prompts=("a doctor",), sld=False)  # fmt: skip
    report, _ = run_study(sd3, Oracle(OracleNet()), library, cfg, tmp_path / "out", "c", None, model_name="tiny-sd3")
    arms = set(report["results"]["safety"]["summary"])
    assert arms == {"plain", "anti-horror direction", "negative prompt", "SEGA reverse edit"}
    assert report["model"]["unet"] == fingerprint(sd3.family.denoiser)
    assert report["model"]["sampler"] == "FlowMatchEulerDiscreteScheduler"
    text = (tmp_path / "out" / "report.md").read_text()
    assert "SLD is left out" in text and "steps of FlowMatchEulerDiscreteScheduler" in text
