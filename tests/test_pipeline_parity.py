"""SegaPipeline against diffusers' own pipelines on the same small components (random weights, fp32, CPU).

References: the deprecated SemanticStableDiffusionPipeline (SEGA), StableDiffusionPipeline (plain SD 1.x
and SD 2.x v-prediction), StableDiffusionXLPipeline (plain SDXL). Tolerance: max |difference| <= 1e-4.
"""

import numpy as np
import pytest
import torch
from diffusers import SemanticStableDiffusionPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline
from tiny_models import sd_components, sdxl_components

from segakit import Edit, SegaPipeline
from segakit.core.errors import UserError

TOL = 1e-4
STEPS = 8


def _quiet(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    c = sd_components(tmp_path_factory.mktemp("sd"))
    plain = _quiet(
        StableDiffusionPipeline(**c, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    )
    ref = _quiet(
        SemanticStableDiffusionPipeline(**c, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    )
    return plain, ref, _quiet(SegaPipeline.from_pipe(plain))


def _gen(seed=0, n=None):
    if n is None:
        return torch.Generator().manual_seed(seed)
    return [torch.Generator().manual_seed(seed + i) for i in range(n)]


def _max_diff(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


THREE_EDITS = dict(
    editing_prompt=["glasses", "beard", "hat"],
    reverse_editing_direction=[False, True, False],
    edit_guidance_scale=[6.0, 4.0, 7.0],
    edit_warmup_steps=[1, 2, 3],
    edit_cooldown_steps=[6, 100, 7],  # the reference takes no None inside a list
    edit_threshold=[0.9, 0.8, 0.95],
    edit_weights=[1.0, 2.0, 0.5],
    edit_momentum_scale=0.3,
    edit_mom_beta=0.6,
)


@pytest.mark.parametrize(
    "case",
    [
        dict(
            prompt="a face", editing_prompt="glasses", edit_warmup_steps=2, edit_guidance_scale=6.0, edit_threshold=0.9
        ),
        dict(prompt="a face", **THREE_EDITS),
        dict(prompt=["a face", "a smiling face"], num_images_per_prompt=2, **THREE_EDITS),
        dict(prompt="a face", editing_prompt="glasses", guidance_scale=1.0),  # SEGA skipped, as in the reference
        dict(prompt="a face", **{**THREE_EDITS, "edit_momentum_scale": 0.0}),  # concepts computed from warm-up on
    ],
    ids=["one-edit", "three-edits", "2-prompts-x-2-images", "no-cfg", "no-momentum"],
)
def test_matches_deprecated_semantic_pipeline(sd, case):
    _, ref, ours = sd
    n = len(case["prompt"]) * case.get("num_images_per_prompt", 1) if isinstance(case["prompt"], list) else 1
    expected = ref(**case, num_inference_steps=STEPS, output_type="np", generator=_gen(0, n)).images
    got = ours(**case, num_inference_steps=STEPS, output_type="np", generator=_gen(0, n)).images
    assert expected.shape == got.shape
    assert _max_diff(expected, got) <= TOL


def test_typed_edits_equal_deprecated_arguments(sd):
    _, _, ours = sd
    a = ours("a face", **THREE_EDITS, num_inference_steps=STEPS, output_type="np", generator=_gen()).images
    edits = [
        Edit("glasses", scale=6.0, threshold=0.9, warmup=1, cooldown=6, weight=1.0),
        Edit("beard", scale=4.0, threshold=0.8, warmup=2, reverse=True, weight=2.0),
        Edit("hat", scale=7.0, threshold=0.95, warmup=3, cooldown=7, weight=0.5),
    ]
    b = ours(
        "a face",
        edits=edits,
        edit_momentum_scale=0.3,
        edit_mom_beta=0.6,
        num_inference_steps=STEPS,
        output_type="np",
        generator=_gen(),
    ).images
    assert np.array_equal(a, b)


def test_precomputed_embeddings_match_text(sd):
    _, ref, ours = sd
    emb = ours.encode_texts(["glasses", "beard"], torch.device("cpu")).embeds
    kw = dict(edit_warmup_steps=1, edit_guidance_scale=5.0, num_inference_steps=STEPS, output_type="np")
    expected = ref("a face", editing_prompt_embeddings=emb, **kw, generator=_gen()).images
    got = ours("a face", editing_prompt_embeddings=emb, **kw, generator=_gen()).images
    by_text = ours("a face", editing_prompt=["glasses", "beard"], **kw, generator=_gen()).images
    assert _max_diff(expected, got) <= TOL and _max_diff(got, by_text) <= TOL


def test_each_concept_stays_with_its_image(sd):
    """Batched prompts with precomputed embeddings equal the prompts run one at a time."""
    _, _, ours = sd
    emb = ours.encode_texts(["glasses", "beard"], torch.device("cpu")).embeds
    kw = dict(editing_prompt_embeddings=emb, edit_warmup_steps=1, num_inference_steps=STEPS, output_type="np")
    both = ours(["a face", "a man"], **kw, generator=_gen(0, 2)).images
    one = ours("a face", **kw, generator=_gen(0, 1)).images
    two = ours("a man", **kw, generator=_gen(1, 1)).images
    assert _max_diff(both[0], one[0]) <= TOL and _max_diff(both[1], two[0]) <= TOL


def test_no_edits_matches_stable_diffusion(sd):
    plain, _, ours = sd
    kw = dict(
        prompt=["a face", "glasses"],
        num_images_per_prompt=2,
        num_inference_steps=STEPS,
        output_type="np",
        negative_prompt=["hat", "hat"],
    )
    assert _max_diff(plain(**kw, generator=_gen(3, 4)).images, ours(**kw, generator=_gen(3, 4)).images) <= TOL


def test_sd2_v_prediction_matches(tmp_path):
    c = sd_components(tmp_path, v_prediction=True)
    plain = _quiet(
        StableDiffusionPipeline(**c, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    )
    ref = _quiet(
        SemanticStableDiffusionPipeline(**c, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    )
    ours = _quiet(SegaPipeline.from_pipe(plain))
    kw = dict(num_inference_steps=STEPS, output_type="np")
    assert (
        _max_diff(plain("a face", **kw, generator=_gen()).images, ours("a face", **kw, generator=_gen()).images) <= TOL
    )
    edit = dict(editing_prompt="glasses", edit_warmup_steps=2)
    assert (
        _max_diff(
            ref("a face", **edit, **kw, generator=_gen()).images, ours("a face", **edit, **kw, generator=_gen()).images
        )
        <= TOL
    )


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    c = sdxl_components(tmp_path_factory.mktemp("sdxl"))
    plain = _quiet(StableDiffusionXLPipeline(**c))
    return plain, _quiet(SegaPipeline.from_pipe(plain))


@pytest.mark.parametrize("negative", [None, "blurry"])
def test_sdxl_no_edits_matches_stable_diffusion_xl(sdxl, negative):
    plain, ours = sdxl
    kw = dict(
        prompt="a face", negative_prompt=negative, num_images_per_prompt=2, num_inference_steps=STEPS, output_type="np"
    )
    assert _max_diff(plain(**kw, generator=_gen(0, 2)).images, ours(**kw, generator=_gen(0, 2)).images) <= TOL


def test_sdxl_edits_change_the_image_and_record(sdxl):
    _, ours = sdxl
    kw = dict(num_inference_steps=STEPS, output_type="np")
    base = ours("a face", **kw, generator=_gen()).images
    out = ours("a face", edits=[Edit("glasses", scale=8, warmup=1)], record_guidance=True, **kw, generator=_gen())
    assert _max_diff(base, out.images) > 1e-3
    again = ours("a face", sem_guidance=out.guidance, **kw, generator=_gen()).images
    assert _max_diff(again, out.images) <= TOL


def _count_unet_rows(pipe):
    rows = []
    handle = pipe.unet.register_forward_pre_hook(lambda m, args: rows.append(args[0].shape[0]))
    return rows, handle


def test_recorded_guidance_reproduces_edit_with_two_branches(sd, tmp_path):
    _, _, ours = sd
    kw = dict(num_inference_steps=STEPS, output_type="np")
    edited = ours("a face", **THREE_EDITS, record_guidance=True, **kw, generator=_gen())
    path = tmp_path / "g.safetensors"
    edited.guidance.save(path)
    from segakit import RecordedGuidance

    loaded = RecordedGuidance.load(path)
    assert loaded.metadata["num_inference_steps"] == STEPS
    rows, handle = _count_unet_rows(ours)
    try:
        again = ours("a face", sem_guidance=loaded, **kw, generator=_gen()).images
    finally:
        handle.remove()
    assert _max_diff(again, edited.images) <= TOL
    assert rows == [2] * STEPS  # unconditional + prompt, no edit branch


def test_cooled_down_concepts_leave_the_batch(sd):
    _, _, ours = sd
    rows, handle = _count_unet_rows(ours)
    try:
        ours(
            "a face",
            edits=[Edit("glasses", warmup=0, cooldown=3), Edit("hat", warmup=0, cooldown=5)],
            num_inference_steps=STEPS,
            output_type="latent",
            generator=_gen(),
        )
    finally:
        handle.remove()
    assert rows == [4, 4, 4, 3, 3, 2, 2, 2]


def test_without_momentum_concepts_join_the_batch_at_their_warm_up(sd):
    """Before its warm-up a concept's estimate only feeds the momentum: with momentum_scale 0 it is not computed
    (the images equal the reference pipeline's: test_matches_deprecated_semantic_pipeline[no-momentum])."""
    _, _, ours = sd
    rows, handle = _count_unet_rows(ours)
    try:
        ours("a face", edits=[Edit("glasses", warmup=2, cooldown=6), Edit("hat", warmup=4)], edit_momentum_scale=0.0,
             num_inference_steps=STEPS, output_type="latent", generator=_gen())  # fmt: skip
    finally:
        handle.remove()
    assert rows == [2, 2, 3, 3, 4, 4, 3, 3]


def test_unet_batch_cap_gives_same_images(sd):
    _, _, ours = sd
    kw = dict(prompt=["a face", "a man"], **THREE_EDITS, num_inference_steps=STEPS, output_type="np")
    full = ours(**kw, generator=_gen(0, 2)).images
    rows, handle = _count_unet_rows(ours)
    try:
        capped = ours(**kw, max_unet_batch=3, generator=_gen(0, 2)).images
    finally:
        handle.remove()
    assert max(rows) <= 3
    assert _max_diff(full, capped) <= TOL


@pytest.mark.parametrize(
    "output_type,check",
    [
        ("pil", lambda im: len(im) == 2 and im[0].size == (32, 32)),
        ("np", lambda im: im.shape == (2, 32, 32, 3)),
        ("pt", lambda im: tuple(im.shape) == (2, 3, 32, 32)),
        ("latent", lambda im: tuple(im.shape) == (2, 4, 16, 16)),
    ],
)
def test_output_types(sd, output_type, check):
    _, _, ours = sd
    images = ours(
        "a face",
        editing_prompt="glasses",
        num_images_per_prompt=2,
        num_inference_steps=2,
        output_type=output_type,
        generator=_gen(0, 2),
    ).images
    assert check(images)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(num_inference_steps=0),
        dict(edit_threshold=1.5, editing_prompt="glasses"),
        dict(output_type="jpeg"),
        dict(height=33),
        dict(prompt=None),
    ],
)
def test_bad_input_is_a_user_error(sd, kwargs):
    _, _, ours = sd
    call = dict(prompt="a face", num_inference_steps=2)
    call.update(kwargs)
    with pytest.raises(UserError):
        ours(**call)
