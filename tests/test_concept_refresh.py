"""Concept refresh (``edit_refresh=K``): a concept's estimate every K steps, its direction reused in between."""

from __future__ import annotations

import pytest
import torch
from tiny_models import sd_components

from segakit import Edit, SegaPipeline
from segakit.core.errors import UserError
from segakit.sega.guidance import ConceptRefresh


def test_due_and_rebuilt_estimates_by_hand():
    r = ConceptRefresh(2)
    e0 = torch.tensor([1.0, 2.0])
    assert r.due(0, [0, 1]) == [0, 1]
    out = r.estimates(0, e0, {0: torch.tensor([2.0, 2.0]), 1: torch.tensor([0.0, 5.0])}, [0, 1])
    assert torch.equal(out[0], torch.tensor([2.0, 2.0]))
    assert r.due(1, [0, 1]) == []  # both reused at step 1
    later = torch.tensor([3.0, 3.0])  # the unconditional estimate moved
    out = r.estimates(1, later, {}, [0, 1])
    assert torch.equal(out[0], torch.tensor([4.0, 3.0])) and torch.equal(
        out[1], torch.tensor([2.0, 6.0])
    )  # e0 + (ee - e0)|step 0
    assert r.due(2, [1]) == [1]  # concept 0 cooled down, concept 1 refreshed


def test_refresh_starts_again_where_a_concept_starts_acting():
    r = ConceptRefresh(3, starts=[5])
    e0 = torch.zeros(1)
    steps = []
    for step in range(12):
        due = r.due(step, [0])
        r.estimates(step, e0, {k: e0 for k in due}, [0])
        steps += [step] if due else []
    assert steps == [0, 3, 5, 8, 11]  # first step, every 3, its warm-up step 5, then every 3 from there


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_bad_refresh_is_refused(bad):
    with pytest.raises(UserError, match="edit_refresh"):
        ConceptRefresh(bad)


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    pipe = SegaPipeline(**sd_components(tmp_path_factory.mktemp("sd")))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run(pipe, **kw):
    edits = [
        Edit("glasses", scale=5, threshold=0.5, warmup=1),
        Edit("beard", scale=4, threshold=0.6, warmup=0, reverse=True),
    ]
    return pipe(
        "a face",
        edits=edits,
        num_inference_steps=6,
        output_type="latent",
        generator=torch.Generator().manual_seed(1),
        **kw,
    ).images


def test_refresh_one_is_exact_sega(sd):
    assert torch.equal(_run(sd), _run(sd, edit_refresh=1))


def test_concept_rows_leave_the_batch_between_refreshes(sd):
    rows = []
    handle = sd.unet.register_forward_pre_hook(lambda m, args: rows.append(args[0].shape[0]))
    try:
        refreshed = _run(sd, edit_refresh=3)
    finally:
        handle.remove()
    # uncond + prompt, + both concepts at step 0; glasses (warm-up 1) again at 1 and 4, beard (warm-up 0) at 3
    assert rows == [4, 3, 2, 3, 3, 2]
    assert not torch.equal(refreshed, _run(sd))  # an approximation, not exact SEGA


def test_cli_edit_refresh_is_recorded_and_regenerates(monkeypatch, capsys, tmp_path):
    from cli_runner import cli, sd_folder
    from PIL import Image

    from segakit.core.images import read_params

    model = sd_folder(tmp_path)
    base = ["generate", "a face", "--model", model, "--steps", 4, "--seed", 2, "--edit", "+glasses:w=0,t=0.5"]
    assert cli(monkeypatch, capsys, *base, "--edit-refresh", 2, "--out", tmp_path / "k2.png")[0] == 0
    assert cli(monkeypatch, capsys, *base, "--out", tmp_path / "exact.png")[0] == 0
    assert read_params(tmp_path / "k2.png")["edit_refresh"] == 2
    assert "edit_refresh" not in read_params(tmp_path / "exact.png")  # exact SEGA's parameters are as before
    assert (
        cli(monkeypatch, capsys, "generate", "--from-png", tmp_path / "k2.png", "--out", tmp_path / "again.png")[0] == 0
    )
    assert Image.open(tmp_path / "again.png").tobytes() == Image.open(tmp_path / "k2.png").tobytes()
    code, _, err = cli(monkeypatch, capsys, *base, "--edit-refresh", 0, "--out", tmp_path / "bad.png")
    assert code == 2 and "--edit-refresh 0" in err and not (tmp_path / "bad.png").exists()


@torch.no_grad()
def _reference_guidance_refresh(pipe, latents, every, steps=6, scale=7.5):
    """Classifier-free guidance whose unconditional estimate is computed every ``every`` steps and rebuilt in
    between as the prompt's estimate plus the last computed offset, written out by hand on diffusers' parts."""
    device = torch.device("cpu")
    cond = pipe.encode_texts(["a face"], device).embeds
    uncond = pipe.encode_texts([""], device).embeds
    sched = type(pipe.scheduler).from_config(pipe.scheduler.config)
    sched.set_timesteps(steps)
    x, offset = latents.clone(), None
    for i, t in enumerate(sched.timesteps):
        xin = sched.scale_model_input(x, t)
        ep = pipe.unet(xin, t, encoder_hidden_states=cond).sample
        if i % every == 0:
            offset = pipe.unet(xin, t, encoder_hidden_states=uncond).sample - ep
        eu = ep + offset
        x = sched.step(eu + scale * (ep - eu), t, x).prev_sample
    return x


@pytest.mark.parametrize("every", [2, 3])
def test_guidance_refresh_equals_a_hand_written_loop(sd, every):
    latents = torch.randn((1, 4, 16, 16), generator=torch.Generator().manual_seed(3))
    rows = []
    handle = sd.unet.register_forward_pre_hook(lambda m, args: rows.append(args[0].shape[0]))
    try:
        out = sd("a face", num_inference_steps=6, latents=latents, output_type="latent", guidance_refresh=every).images
    finally:
        handle.remove()
    assert rows == [2 if i % every == 0 else 1 for i in range(6)]  # the unconditional row only on refresh steps
    ref = _reference_guidance_refresh(sd, latents, every)
    exact = sd("a face", num_inference_steps=6, latents=latents, output_type="latent").images
    err = (out - ref).abs().max()
    assert err < 2e-4, err  # batched against single-row U-Net calls, amplified by the guidance scale
    assert (exact - ref).abs().max() > 100 * err  # and the refreshed guidance is not plain CFG


def test_guidance_refresh_with_concepts_drops_both_kinds_of_rows(sd):
    rows = []
    handle = sd.unet.register_forward_pre_hook(lambda m, args: rows.append(args[0].shape[0]))
    try:
        _run(sd, edit_refresh=3, guidance_refresh=2)
    finally:
        handle.remove()
    # the unconditional row at 0, 2, 4; glasses at 0, 1 (its warm-up), 4; beard at 0, 3
    assert rows == [4, 2, 2, 2, 3, 1]


def test_guidance_refresh_refuses_a_call_without_guidance(sd):
    with pytest.raises(UserError, match="guidance_refresh 2 refreshes classifier-free guidance"):
        sd("a face", num_inference_steps=2, guidance_scale=1.0, output_type="latent", guidance_refresh=2)
    with pytest.raises(UserError, match="guidance_refresh 0 must be a whole number"):
        sd("a face", num_inference_steps=2, output_type="latent", guidance_refresh=0)


def test_cli_guidance_refresh_is_recorded_regenerates_and_refuses_in_flags(monkeypatch, capsys, tmp_path):
    from cli_runner import cli, sd_folder
    from PIL import Image

    from segakit.core.images import read_params

    model = sd_folder(tmp_path)
    base = ["generate", "a face", "--model", model, "--steps", 4, "--seed", 2]
    assert cli(monkeypatch, capsys, *base, "--guidance-refresh", 2, "--out", tmp_path / "g2.png")[0] == 0
    assert cli(monkeypatch, capsys, *base, "--out", tmp_path / "exact.png")[0] == 0
    assert read_params(tmp_path / "g2.png")["guidance_refresh"] == 2
    assert "guidance_refresh" not in read_params(tmp_path / "exact.png")
    assert Image.open(tmp_path / "g2.png").tobytes() != Image.open(tmp_path / "exact.png").tobytes()
    assert (
        cli(monkeypatch, capsys, "generate", "--from-png", tmp_path / "g2.png", "--out", tmp_path / "again.png")[0] == 0
    )
    assert Image.open(tmp_path / "again.png").tobytes() == Image.open(tmp_path / "g2.png").tobytes()
    code, _, err = cli(monkeypatch, capsys, *base, "--guidance-refresh", 0, "--out", tmp_path / "bad.png")
    assert code == 2 and "--guidance-refresh 0" in err and not (tmp_path / "bad.png").exists()
    code, _, err = cli(
        monkeypatch, capsys, *base, "--guidance", 1, "--guidance-refresh", 2, "--out", tmp_path / "bad.png"
    )
    assert code == 2 and "--guidance-refresh 2 refreshes classifier-free guidance" in err and "--guidance <= 1" in err
    assert "Traceback" not in err and not (tmp_path / "bad.png").exists()


def test_auto_refresh_takes_k_from_the_steps():
    from segakit.sega.guidance import refresh_interval

    assert [refresh_interval("auto", n) for n in (1, 10, 25, 50, 100)] == [1, 3, 4, 6, 8]
    assert refresh_interval(3, 25) == 3 and refresh_interval("2", 25) == 2
    for bad in (0, 2.5, "fast", True):
        with pytest.raises(UserError, match="neither a whole number of 1 or more"):
            refresh_interval(bad, 25)


def test_auto_is_k_4_at_25_steps(sd):
    a = sd("a face", edits=[Edit("glasses", warmup=1)], num_inference_steps=25, output_type="latent",
           generator=torch.Generator().manual_seed(1), edit_refresh="auto").images  # fmt: skip
    b = sd("a face", edits=[Edit("glasses", warmup=1)], num_inference_steps=25, output_type="latent",
           generator=torch.Generator().manual_seed(1), edit_refresh=4).images  # fmt: skip
    assert torch.equal(a, b)


def test_cli_auto_refresh_is_recorded_as_auto(monkeypatch, capsys, tmp_path):
    from cli_runner import cli, sd_folder

    from segakit.core.images import read_params

    model = sd_folder(tmp_path)
    base = ["generate", "a face", "--model", model, "--steps", 4, "--seed", 2, "--edit", "+glasses:w=0,t=0.5"]
    assert cli(monkeypatch, capsys, *base, "--edit-refresh", "auto", "--out", tmp_path / "auto.png")[0] == 0
    assert read_params(tmp_path / "auto.png")["edit_refresh"] == "auto"
    code, _, err = cli(monkeypatch, capsys, *base, "--edit-refresh", "fast", "--out", tmp_path / "bad.png")
    assert code == 2 and "--edit-refresh 'fast' is neither" in err and not (tmp_path / "bad.png").exists()
