"""Self-discovered h-space directions: the hook, the pipeline's use of it, files, learning (issue 16)."""

from __future__ import annotations

import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from tiny_models import sd_components, sdxl_components

from segakit import SegaPipeline
from segakit.core.errors import UserError
from segakit.core.hooks import MidBlockShift, conditional_rows, mid_block_shape
from segakit.directions import (
    Direction,
    LearnConfig,
    learn_direction,
    parse_direction_spec,
)
from segakit.sega.guidance import Edit

STEPS = 4


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    pipe = SegaPipeline.from_pipe(StableDiffusionPipeline(**sd_components(tmp_path_factory.mktemp("sd")), safety_checker=None,
                                                          feature_extractor=None, requires_safety_checker=False))  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    pipe = SegaPipeline.from_pipe(StableDiffusionXLPipeline(**sdxl_components(tmp_path_factory.mktemp("sdxl"))))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _gens(n, first=0):
    return [torch.Generator().manual_seed(first + i) for i in range(n)]


def _direction(pipe, seed=0, scale=1.0, size=None) -> Direction:
    shape = mid_block_shape(
        pipe.unet, *(size or (pipe.unet.config.sample_size * pipe.vae_scale_factor,) * 2), pipe.vae_scale_factor
    )
    return Direction(scale * torch.randn(shape, generator=torch.Generator().manual_seed(seed)), "test")


def _run(pipe, n=2, steps=STEPS, **kw):
    return pipe(
        "a face", num_inference_steps=steps, num_images_per_prompt=n, generator=_gens(n), output_type="pt", **kw
    ).images


@pytest.mark.parametrize("family", ["sd", "sdxl"])
@pytest.mark.parametrize("size", [None, 40])
def test_mid_block_shape_is_what_the_unet_produces(family, size, sd, sdxl):
    pipe = sd if family == "sd" else sdxl
    px = size or pipe.unet.config.sample_size * pipe.vae_scale_factor
    seen = []
    handle = pipe.unet.mid_block.register_forward_hook(lambda m, a, out: seen.append(tuple(out.shape[1:])))
    try:
        pipe("a face", num_inference_steps=1, height=px, width=px, output_type="latent", generator=_gens(1))
    finally:
        handle.remove()
    assert seen[0] == mid_block_shape(pipe.unet, px, px, pipe.vae_scale_factor)


def test_conditional_rows_by_hand():
    offset = torch.tensor([1.0, 2.0]).view(2, 1, 1, 1)
    rows = conditional_rows(offset, branches=4, do_cfg=True)  # uncond, prompt, two edit concepts
    assert rows.flatten().tolist() == [0, 0, 1, 2, 0, 0, 0, 0]
    assert conditional_rows(offset, branches=1, do_cfg=False).flatten().tolist() == [1, 2]
    assert conditional_rows(None, branches=2, do_cfg=True) is None


def test_shift_follows_sub_batches_and_leaves_no_hook(sd):
    unet = sd.unet
    deltas = torch.randn(
        4, *mid_block_shape(unet, 32, 32, sd.vae_scale_factor), generator=torch.Generator().manual_seed(2)
    )
    x = torch.randn(4, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    emb = torch.randn(4, 16, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = unet(x, 10, encoder_hidden_states=emb).sample
        with MidBlockShift(unet) as shift:
            shift.set(deltas)
            whole = unet(x, 10, encoder_hidden_states=emb).sample
            shift.set(deltas)  # two sub-batches take rows 0-1, then rows 2-3
            halves = torch.cat([unet(x[s : s + 2], 10, encoder_hidden_states=emb[s : s + 2]).sample for s in (0, 2)])
        after = unet(x, 10, encoder_hidden_states=emb).sample
    torch.testing.assert_close(whole, halves, atol=1e-5, rtol=1e-5)
    assert (whole - plain).abs().max() > 1e-3
    torch.testing.assert_close(after, plain, atol=0, rtol=0)  # the hook is gone after the block
    assert len(unet.mid_block._forward_hooks) == 0


def test_zero_strength_is_exactly_no_direction_and_strength_changes_the_image(sd):
    d = _direction(sd)
    plain = _run(sd)
    torch.testing.assert_close(_run(sd, directions=[d.at(0.0)]), plain, atol=0, rtol=0)
    assert (_run(sd, directions=[d.at(2.0)]) - plain).abs().max() > 1e-3


def test_only_the_conditional_branch_is_shifted(sd):
    """At the first step both runs see the same latents: the unconditional rows' mid-block input to the up path
    must match, the prompt rows' must differ by the direction."""
    d = _direction(sd, scale=3.0)
    seen = []

    def record(module, args, kwargs):
        seen.append(kwargs["hidden_states"] if "hidden_states" in kwargs else args[0])

    handle = sd.unet.up_blocks[0].register_forward_pre_hook(record, with_kwargs=True)
    try:
        _run(sd, n=2, steps=1)
        _run(sd, n=2, steps=1, directions=[d.at(1.0)])
    finally:
        handle.remove()
    plain, shifted = seen[0], seen[1]
    torch.testing.assert_close(shifted[:2], plain[:2])  # unconditional rows untouched
    assert (shifted[2:] - plain[2:]).abs().max() > 0.1  # prompt rows moved


class PerImage:
    """An h-space offset that gives each image its own vector (what fair generation does)."""

    def __init__(self, vectors):
        self.vectors = vectors

    def offset(self, batch, shape, device, dtype):
        return torch.stack(self.vectors).to(device, dtype)


def test_each_image_gets_its_own_offset(sd):
    d = _direction(sd, scale=2.0)
    zero = torch.zeros_like(d.vector)
    both = _run(sd, n=2, directions=[PerImage([zero, d.vector])])
    plain = _run(sd, n=2)
    alone = _run(sd, n=2, directions=[d.at(1.0)])
    torch.testing.assert_close(both[0], plain[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(both[1], alone[1], atol=1e-4, rtol=0)


def test_directions_sum_and_compose_with_sega_edits_and_recording(sd):
    a, b = _direction(sd, 1), _direction(sd, 2)
    torch.testing.assert_close(_run(sd, directions=[a.at(1.0), b.at(1.0)]),
                               _run(sd, directions=[Direction(a.vector + b.vector).at(1.0)]), atol=1e-5, rtol=0)  # fmt: skip
    edits = [Edit("glasses", scale=5, warmup=1)]
    with_edit = sd("a face", num_inference_steps=STEPS, generator=_gens(1), output_type="pt", edits=edits,
                   directions=[a.at(1.0)], record_guidance=True)  # fmt: skip
    edit_only = _run(sd, n=1, edits=edits)
    assert with_edit.guidance is not None and (with_edit.images - edit_only).abs().max() > 1e-3


def test_sdxl_takes_directions(sdxl):
    d = _direction(sdxl, scale=2.0)
    assert (_run(sdxl, directions=[d.at(1.0)]) - _run(sdxl)).abs().max() > 1e-3


def test_file_round_trip_and_refusals(sd, tmp_path):
    d = _direction(sd)
    d.meta = {"unet": "abc", "positive": "a face of a woman"}
    path = d.save(tmp_path / "woman.safetensors")
    back = Direction.load(path)
    torch.testing.assert_close(back.vector, d.vector)
    assert back.name == "test" and back.meta == d.meta
    with pytest.raises(UserError, match="does not exist"):
        Direction.load(tmp_path / "missing.safetensors")
    torch.save({"direction": d.vector}, tmp_path / "pickle.pt")
    with pytest.raises(UserError, match="safetensors only"):
        Direction.load(tmp_path / "pickle.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(UserError, match="not a segakit direction file"):
        Direction.load(tmp_path / "junk.safetensors")
    with pytest.raises(UserError, match="must end in .safetensors"):
        d.save(tmp_path / "woman.pt")
    with pytest.raises(UserError, match="learned on U-Net weights abc"):
        back.check_model(sd.unet)


def test_other_size_is_resized_other_channels_refused(sd):
    small = _direction(sd)  # learned at the model's size
    c, h, w = small.shape
    big = small.resized((c, 2 * h, 2 * w))
    assert big.shape == (c, 2 * h, 2 * w)
    torch.testing.assert_close(big.mean(), small.vector.mean(), atol=1e-4, rtol=0)  # bilinear x2 keeps the mean
    px = 2 * sd.unet.config.sample_size * sd.vae_scale_factor
    out = sd("a face", num_inference_steps=2, height=px, width=px, generator=_gens(1), output_type="latent",
             directions=[small.at(1.0)])  # fmt: skip
    assert out.images.shape[-1] == px // sd.vae_scale_factor
    with pytest.raises(UserError, match="channels"):
        Direction(torch.zeros(c + 1, h, w), "other").resized((c, h, w))


@pytest.mark.parametrize("spec, expected", [("a.safetensors", ("a.safetensors", 1.0)), ("a.safetensors:1.5", ("a.safetensors", 1.5)),
                                            ("dir/a.safetensors:-2", ("dir/a.safetensors", -2.0))])  # fmt: skip
def test_direction_spec(spec, expected):
    path, strength = parse_direction_spec(spec)
    assert (str(path), strength) == expected


@pytest.mark.parametrize("spec", ["a.safetensors:abc", "a.safetensors:inf"])
def test_bad_direction_spec(spec):
    with pytest.raises(UserError, match="--direction"):
        parse_direction_spec(spec)


def test_learning_on_small_components_resumes_from_its_cache(sd, tmp_path, monkeypatch):
    cfg = LearnConfig(name="x", positive="a face with glasses", neutral="a face", images=3, steps=4, batch=2,
                      gen_steps=2, gen_batch=2)  # fmt: skip
    before = [p.requires_grad for p in sd.unet.parameters()]
    first = learn_direction(sd, cfg, tmp_path)
    assert first.shape == mid_block_shape(sd.unet, 32, 32, sd.vae_scale_factor) and torch.isfinite(first.vector).all()
    assert (
        first.vector.abs().max() > 0 and first.meta["images"] == 3 and len(list(tmp_path.rglob("*.safetensors"))) == 2
    )
    assert [p.requires_grad for p in sd.unet.parameters()] == before  # the weights' flags are restored
    monkeypatch.setattr(type(sd), "__call__", lambda *a, **k: pytest.fail("cached latents were generated again"))
    again = learn_direction(sd, cfg, tmp_path)
    torch.testing.assert_close(again.vector, first.vector)  # same latents, same seeded draws


def test_sega_edits_while_generating_the_images_are_applied_and_keyed(sd, tmp_path):
    """LearnConfig.edits: the images are the pipeline's with those SEGA edits (the "sega-cleaned" recipe), and the
    cache keeps them apart from the same prompt's images without edits."""
    from segakit.directions.learn import cache_key, shard_latents

    plain = LearnConfig(name="x", positive="a zombie", neutral="a zombie", images=2, gen_steps=2, gen_batch=2)
    cleaned = LearnConfig(**{**plain.__dict__, "edits": (Edit("a zombie", reverse=True, scale=5.0, warmup=0),)})
    assert cache_key(sd, plain) != cache_key(sd, cleaned)
    with_edits = shard_latents(sd, cleaned, 0, 2)
    expected = sd(
        "a zombie",
        num_inference_steps=2,
        guidance_scale=7.5,
        num_images_per_prompt=2,
        generator=_gens(2),
        edits=[Edit("a zombie", reverse=True, scale=5.0, warmup=0)],
        output_type="latent",
    ).images
    torch.testing.assert_close(with_edits, expected.float())
    assert not torch.allclose(with_edits, shard_latents(sd, plain, 0, 2))
    direction = learn_direction(sd, LearnConfig(**{**cleaned.__dict__, "steps": 2, "batch": 2}), tmp_path)
    assert direction.meta["edits"][0]["reverse"] is True  # the file says how its images were made


@pytest.mark.parametrize("kw, message", [({"images": 0}, "--images"), ({"steps": -1}, "--steps"), ({"lr": 0.0}, "--lr"),
                                         ({"name": " "}, "name")])  # fmt: skip
def test_bad_learning_config(kw, message):
    with pytest.raises(UserError, match=message):
        LearnConfig(**{"name": "x", "positive": "p", **kw}).check()
