"""Editing on rectified flows: FlowEdit's and the inversion's invariants, on small random SD3 and FLUX models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import FluxPipeline, StableDiffusion3Pipeline
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from tiny_flow_models import flow_pipe, flux_components, sd3_components

from segakit import Edit, SegaPipeline
from segakit.core.errors import UserError
from segakit.core.flow_inversion import invert, sample
from segakit.editing.flow import FlowEditor
from segakit.editing.flowedit import flowedit, skipped_steps


@pytest.fixture(scope="module")
def sd3(tmp_path_factory):
    return FlowEditor(flow_pipe(StableDiffusion3Pipeline, sd3_components(tmp_path_factory.mktemp("sd3"))))


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    pipe = flow_pipe(FluxPipeline, flux_components(tmp_path_factory.mktemp("flux")))
    pipe.family.max_sequence_length = 32
    return FlowEditor(pipe)


@pytest.fixture(scope="module")
def face():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))


def _linear_field(a: float = 0.7):
    """A velocity field whose exact flow is known: v(x, s) = a x (dx/ds = a x)."""
    return lambda x, s: a * x


def test_flowedit_at_strength_zero_is_the_source_exactly():
    x = torch.randn(1, 4, 8, 8)
    sigmas = torch.linspace(1, 0, 11)
    out = flowedit(lambda a, b, s: (a * 2, b * 3), x, sigmas, skip=skipped_steps(10, 0.0))
    assert torch.equal(out, x)


def test_flowedit_with_equal_sides_moves_nothing():
    x = torch.randn(1, 4, 8, 8)
    sigmas = torch.linspace(1, 0, 11)
    field = _linear_field()
    out = flowedit(
        lambda a, b, s: (field(a, s), field(b, s)), x, sigmas, skip=2, generator=torch.Generator().manual_seed(0)
    )
    assert torch.allclose(out, x, atol=1e-5)


def test_flowedit_mask_moves_only_where_the_sides_differ_most():
    """Hand-computed: the sides differ by 2 on the image's top-left quarter and by 1 elsewhere; a noise mask at
    quantile 0.8 keeps the quarter only, so it moves by 2 x (sum of the edited steps' sigma decrements) and the rest
    stays the source exactly; without the mask everything moves."""
    x = torch.randn(1, 4, 8, 8)
    sigmas = torch.linspace(1, 0, 11)
    diff = torch.ones(1, 4, 8, 8)
    diff[..., :4, :4] = 2.0

    def velocity(a, b, s):
        return torch.zeros_like(a), diff.clone()

    out = flowedit(velocity, x, sigmas, skip=4, mask=0.8)
    moved = float(sigmas[10] - sigmas[4]) * 2.0
    assert torch.allclose(out[..., :4, :4], x[..., :4, :4] + moved, atol=1e-5)
    rest = torch.ones(8, 8, dtype=torch.bool)
    rest[:4, :4] = False
    assert torch.equal(out[..., rest], x[..., rest])
    unmasked = flowedit(velocity, x, sigmas, skip=4)
    assert torch.allclose(unmasked[..., rest], x[..., rest] + moved / 2, atol=1e-5)


def test_flowedit_mask_is_refused_outside_its_range(sd3, face):
    with pytest.raises(UserError, match="mask 1.0 is outside"):
        sd3.flowedit(face, "a face", "a face with a hat", steps=4, mask=1.0)
    masked = sd3.flowedit(face, "a face", "a face with a hat", steps=6, strength=0.5, mask=0.9)
    assert masked.settings["mask"] == 0.9 and (masked.latents - masked.source_latents).abs().max() > 1e-3


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 30), st.floats(0.05, 0.95))
def test_eta_one_on_every_step_lands_on_the_source(steps, start):
    """RF-Inversion's controller at eta = 1 is the straight line to y0: the last Euler step lands on it."""
    y0 = torch.randn(1, 4, 4, 4, dtype=torch.float64)
    sigmas = torch.linspace(start, 0, steps + 1, dtype=torch.float64)
    out = sample(_linear_field(), torch.randn(1, 4, 4, 4, dtype=torch.float64), sigmas, y0, eta=1.0)
    assert torch.allclose(out, y0, atol=1e-9)


def test_inversion_error_is_first_order():
    """On a field with a known flow, inverting then sampling returns the start with an error that halves as the
    steps double (Euler is first order)."""
    x0 = torch.randn(1, 4, 4, 4, dtype=torch.float64)
    errors = []
    for steps in (10, 20, 40):
        sigmas = torch.linspace(1, 0, steps + 1, dtype=torch.float64)
        noise, path = invert(_linear_field(), x0, sigmas)
        assert torch.equal(path[-1], x0) and torch.equal(path[0], noise)
        errors.append((sample(_linear_field(), noise, sigmas) - x0).abs().max().item())
    assert errors[0] > errors[1] > errors[2] and 1.6 < errors[0] / errors[1] < 2.4


@pytest.mark.parametrize("name", ["sd3", "flux"])
def test_inversion_then_sampling_reconstructs(name, sd3, flux, face):
    """Stated tolerance: on these random transformers, 28 steps reconstruct the latents to within 0.05 of their
    range (first-order inversion; a trained model's smoother field does better)."""
    editor = {"sd3": sd3, "flux": flux}[name]
    noise, sigmas, x_src = editor.invert(face, "a face", steps=28)
    back = sample(editor.velocity("a face", 1.0), noise, sigmas)
    span = (x_src.max() - x_src.min()).item()
    assert (back - x_src).abs().max().item() <= 0.05 * span
    assert (noise - x_src).abs().max().item() > 0.2 * span  # it did go somewhere


@pytest.mark.parametrize("name", ["sd3", "flux"])
def test_sega_without_concepts_is_the_inversions_reconstruction(name, sd3, flux, face):
    """The pipeline's loop sampled from the inverted noise equals the inversion module's sampling: the editor's
    velocity and SegaPipeline agree; with a concept the image changes."""
    editor = {"sd3": sd3, "flux": flux}[name]
    noise, sigmas, _ = editor.invert(face, "a face", steps=6)
    want = sample(editor.velocity("a face", 1.0), noise, sigmas)
    got = editor.sega(face, "a face", edits=[], steps=6).latents
    assert torch.allclose(got, want, atol=1e-4)
    edited = editor.sega(face, "a face", edits=[Edit("beard", scale=6, threshold=0.5, warmup=0)], steps=6).latents
    assert (edited - got).abs().max() > 1e-3


def test_flowedit_edits_and_keeps_at_zero_strength(sd3, face):
    out = sd3.flowedit(face, "a face", "a face with a hat", steps=6, strength=0.5)
    assert out.settings["source_guidance"] == 3.5 and len(out.images) == 1 and out.images[0].size == (32, 32)
    assert (out.latents - out.source_latents).abs().max() > 1e-3
    same = sd3.flowedit(face, "a face", "a face with a hat", steps=6, strength=0.0)
    assert torch.equal(same.latents, same.source_latents)


def test_bad_settings_and_unet_models_are_refused(sd3, tmp_path):
    with pytest.raises(UserError, match="strength 1.5 is outside"):
        sd3.flowedit(Image.new("RGB", (32, 32)), "a", "b", strength=1.5)
    from diffusers import StableDiffusionPipeline
    from tiny_models import sd_components

    unet = SegaPipeline.from_pipe(StableDiffusionPipeline(**sd_components(tmp_path), safety_checker=None, feature_extractor=None,
                                                          requires_safety_checker=False))  # fmt: skip
    with pytest.raises(UserError, match="needs an SD3 or FLUX model"):
        FlowEditor(unet)
