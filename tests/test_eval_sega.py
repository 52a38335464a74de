"""`segakit eval sega`: the whole study on 4 seeds (tiny random components, random oracle), resume, determinism,
SSIM, the bookkeeping of the measures on hand-made cases, and bad input.

The models have random weights: these tests check the machinery and the bookkeeping, not the numbers.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from segakit.core.errors import UserError
from segakit.eval.isolation import isolation
from segakit.eval.sega_study import (
    StudyConfig,
    StudyProgress,
    at_least,
    both_succeeded,
    encode,
    goal_probability,
    monotonicity,
    rate,
    run_study,
    wilson,
)
from segakit.eval.ssim import gaussian_window, ssim
from segakit.eval.targets import BALD, GLASSES, GRAY_HAIR, NO_SMILE, REMOVALS, STUDY_ADDITIONS, WOMAN
from segakit.world.schema import ATTRIBUTES

# The study on 4 seeds, 2 steps, with a sweep of 8 scales; warm-up 0 so that edits act at all in 2 steps.
TINY = StudyConfig(seeds=4, steps=2, batch=8, warmup=0, sweep=(0, 1, 2, 3, 4, 5, 6, 8), sweep_seeds=1, unique_seeds=2,
                   figure_seeds=1, grid_strengths=(0, 4, 8))  # fmt: skip


def tiny_components(tmp: Path) -> dict:
    """Very small random SD components (faster than tests/tiny_models.sd_components)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from tiny_models import _scheduler, _text_config, make_tokenizer
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    tok = make_tokenizer(tmp / "tokenizer")
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, attention_head_dim=4, norm_num_groups=4,
    ).eval()  # fmt: skip
    vae = AutoencoderKL(block_out_channels=[8, 16], in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=4,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2).eval()  # fmt: skip
    text = CLIPTextModel(_text_config(len(tok), hidden=16, projection_dim=16)).eval()
    return {"vae": vae, "text_encoder": text, "tokenizer": tok, "unet": unet, "scheduler": _scheduler()}


def tiny_pipe(tmp: Path):
    from segakit import SegaPipeline

    pipe = SegaPipeline(**tiny_components(tmp))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_oracle():
    from segakit.world.oracle import Oracle, OracleConfig, OracleNet

    torch.manual_seed(1)
    return Oracle(OracleNet(OracleConfig(widths=(4, 8, 8, 8), feature_dim=16)))


class Counter(StudyProgress):
    def __init__(self, stop_after: int | None = None) -> None:
        self.done, self.expected, self.stop_after = 0, 0, stop_after

    def total(self, images: int) -> None:
        self.expected = images

    def advance(self, images: int) -> None:
        self.done += images
        if self.stop_after is not None and self.done >= self.stop_after:
            raise KeyboardInterrupt  # an interruption in the middle of a unit


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is faster, and the machine is shared
    yield tiny_pipe(tmp_path_factory.mktemp("pipe")), tiny_oracle()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def first_run(models, tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    progress = Counter()
    report, paths = run_study(*models, TINY, out, "segakit eval sega --seeds 4", progress, model_name="tiny")
    return out, report, paths, progress


# ------------------------------------------------------------------------------------------ the whole study
def test_whole_study_on_four_seeds(first_run):
    out, report, paths, progress = first_run
    assert progress.done == progress.expected == report["run"]["images"] > 0
    r = report["results"]
    assert r["plain"]["seeds"] == 4
    assert list(r["additions"]) == [t.name for t in STUDY_ADDITIONS]
    assert list(r["removals"]) == [t.name for t in REMOVALS]
    assert len(r["additions_by_attribute"]) == 10  # gender pooled over both directions + nine
    # every seed is scored by exactly one of +woman / +man, and each addition or removal on the seeds that need it
    assert r["additions"]["woman"]["seeds"] + r["additions"]["man"]["seeds"] == 4
    for t in (GLASSES, NO_SMILE):
        table = r["removals"] if t.remove else r["additions"]
        assert table[t.name]["seeds"] == sum(not t.achieved(lab) for lab in _plain_labels(out))
    for a in r["additions"].values():
        for side in ("sega", "baseline"):
            s = a[side]
            assert s["success"]["n"] == a["seeds"]
            if a["seeds"]:
                assert 0 <= s["success"]["rate"] <= 1 and 0 <= s["isolation"]["unchanged"] <= 1
                assert -1 <= s["composition"]["ssim"] <= 1 and s["composition"]["rmse"] >= 0
    for c in r["combinations"]:
        assert c["seeds"] == 4 and set(c["at_least"]) == {"1", "2", "3", "4"}
        assert c["at_least"]["1"] >= c["at_least"]["2"] >= c["at_least"]["3"] >= c["at_least"]["4"]
    for m in r["monotonicity"].values():
        assert m["scales"] == list(map(float, TINY.sweep)) and len(m["mean_probability"]) == 8 and m["seeds"] <= 1
    u = r["uniqueness"]
    assert len(u["prompts"]) == 5 and u["seeds"] == 2
    # the files
    names = {p.name for p in paths}
    assert {"report.json", "report.md", "fig_strength.png", "fig_combination.png", "fig_two_concepts.png",
            "fig_monotonicity.png", "fig_baseline.png"} <= names  # fmt: skip
    saved = json.loads((out / "report.json").read_text())
    assert saved["config"]["seeds"] == 4 and saved["command"] == "segakit eval sega --seeds 4"
    text = (out / "report.md").read_text()
    for heading in (
        "## Additions (Table 1)",
        "## Removals",
        "## Four simultaneous edits (Table 2)",
        "## Monotonicity",
        "## Uniqueness",
    ):
        assert heading in text
    assert "nan" not in text.lower().split()  # missing values print as '-'
    assert (out / "cache" / ".gitignore").read_text().strip().endswith("*")
    from PIL import Image

    with Image.open(out / "fig_two_concepts.png") as im:
        assert im.size[0] >= 3 * 128  # 3 strengths, 64 px images at scale 2


def _plain_labels(out: Path) -> list[dict]:
    from segakit.eval.sega_study import decode

    (path,) = (out / "cache").glob("plain-*.npz")
    with np.load(path) as d:
        return decode(d["labels"])


def test_resume_after_interruption_gives_the_same_report(first_run, models, tmp_path):
    _, report, _, progress = first_run
    with pytest.raises(KeyboardInterrupt):
        run_study(*models, TINY, tmp_path, "x", Counter(stop_after=progress.expected // 2))
    assert not (tmp_path / "report.json").exists()  # no report until the study is complete
    partial = len(list((tmp_path / "cache").glob("*.npz")))
    assert partial > 1 and not list((tmp_path / "cache").glob(".*.tmp"))  # finished units kept, nothing half written
    resumed, _ = run_study(*models, TINY, tmp_path, "x", Counter())
    assert resumed["run"]["units_from_cache"] == partial
    assert resumed["results"] == report["results"]  # determinism: recomputed units equal the first run's
    again, _ = run_study(*models, TINY, tmp_path, "x", Counter())
    assert again["run"]["units_from_cache"] == again["run"]["units"]
    assert again["results"] == report["results"]
    # a report rewritten from the cache still states what its units cost when they were computed
    assert again["run"]["compute_s"] == resumed["run"]["compute_s"] > 0
    assert again["run"]["units_without_compute_time"] == 0
    assert f"took {again['run']['compute_s']:.0f} s when they were made" in (tmp_path / "report.md").read_text()
    assert json.loads((tmp_path / "report.json").read_text())["results"] == report["results"]


def test_cache_is_keyed_by_what_a_unit_depends_on(first_run, models, tmp_path):
    out, _, _, _ = first_run
    import shutil

    shutil.copytree(out / "cache", tmp_path / "cache")
    before = set(p.name for p in (tmp_path / "cache").glob("*.npz"))
    changed = replace(
        TINY, scale=TINY.scale + 2.0
    )  # edits change; plain images, prompt rewrites and plain prompts do not
    progress = Counter()
    report, _ = run_study(*models, changed, tmp_path, "x", progress)
    computed = {p.name.split("-")[0] for p in (tmp_path / "cache").glob("*.npz") if p.name not in before}
    assert {"add", "remove", "combination", "unique"} <= computed  # these use the edit scale
    assert not computed & {"plain", "rewrite", "sweep"}  # the sweep names its own scales
    assert report["run"]["units_from_cache"] > 0
    assert progress.done == progress.expected
    assert report["results"]["additions"]["glasses"]["edit"]["scale"] == TINY.scale + 2.0


def test_guidance_refresh_keys_every_unit_that_uses_guidance(first_run, models, tmp_path):
    out, _, _, _ = first_run
    import shutil

    shutil.copytree(out / "cache", tmp_path / "cache")
    before = set(p.name for p in (tmp_path / "cache").glob("*.npz"))
    report, _ = run_study(*models, replace(TINY, guidance_refresh=2), tmp_path, "x", Counter())
    computed = {p.name.split("-")[0] for p in (tmp_path / "cache").glob("*.npz") if p.name not in before}
    assert {"plain", "rewrite", "add", "remove"} <= computed  # classifier-free guidance makes every image
    assert report["config"]["guidance_refresh"] == 2


def test_command_line_end_to_end(models, tmp_path, monkeypatch, capsys):
    """`segakit eval sega` on a saved tiny model folder and oracle file: files listed, report names the command."""
    import sys

    from diffusers import StableDiffusionPipeline

    from segakit.cli import main

    pipe, oracle = models
    StableDiffusionPipeline(**{k: getattr(pipe, k) for k in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")},
                            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
                            ).save_pretrained(tmp_path / "model", safe_serialization=True)  # fmt: skip
    oracle.save(tmp_path / "oracle.safetensors", half=False)
    args = ["--seeds", "2", "--steps", "1", "--warmup", "0", "--sweep-seeds", "1", "--unique-seeds", "1", "--batch", "4",
            "--model", str(tmp_path / "model"), "--oracle", str(tmp_path / "oracle.safetensors"), "--out", str(tmp_path / "r"),
            "--target-scale", "bald=9", "--threads", "1"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["segakit", "eval", "sega", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    assert not exc.value.code
    listed = capsys.readouterr().out.split()
    assert str(tmp_path / "r" / "report.md") in listed and all(Path(p).is_file() for p in listed)
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["command"].startswith("segakit eval sega --seeds 2") and report["model"]["name"] == str(
        tmp_path / "model"
    )
    assert report["results"]["additions"]["bald"]["edit"]["scale"] == 9.0 and report["config"]["seeds"] == 2


# ------------------------------------------------------------------------------------------ SSIM
def test_ssim_known_values_and_properties():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 32, 32, generator=g)
    assert torch.allclose(ssim(x, x), torch.ones(3, dtype=torch.float64))
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert torch.allclose(ssim(x, y), ssim(y, x))
    # more noise, less similar
    noisier = [(x + s * torch.randn(x.shape, generator=g)).clamp(0, 1) for s in (0.02, 0.1, 0.3)]
    values = [float(ssim(x, z).mean()) for z in noisier]
    assert 1 > values[0] > values[1] > values[2] > -1
    # constant images: s = 0, so SSIM = (2 a b + C1) / (a^2 + b^2 + C1) exactly
    a, b, c1 = 0.2, 0.7, 0.01**2
    const = ssim(torch.full((1, 1, 16, 16), a, dtype=torch.float64), torch.full((1, 1, 16, 16), b, dtype=torch.float64))
    assert float(const) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-9)
    # an inverted image has negative structure
    assert float(ssim(x, 1 - x).mean()) < 0


def test_ssim_matches_a_hand_computation_on_one_window():
    """An 11x11 image has one window position: SSIM is the Gaussian-weighted formula, computed here by hand."""
    rng = np.random.default_rng(3)
    x, y = rng.random((11, 11)), rng.random((11, 11))
    w1 = gaussian_window().numpy()
    w = np.outer(w1, w1)
    assert w.sum() == pytest.approx(1.0) and w1[5] == w1.max() and w1[0] == pytest.approx(w1[10])
    mx, my = (w * x).sum(), (w * y).sum()
    vx, vy = (w * x * x).sum() - mx**2, (w * y * y).sum() - my**2
    cxy = (w * x * y).sum() - mx * my
    c1, c2 = 0.01**2, 0.03**2
    expected = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    got = ssim(torch.from_numpy(x)[None, None], torch.from_numpy(y)[None, None])
    assert float(got) == pytest.approx(expected, rel=1e-10)
    with pytest.raises(ValueError):
        ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))


# ------------------------------------------------------------------------------------------ bookkeeping
def test_monotonicity_on_hand_made_probabilities():
    scales = [0, 1, 2, 3, 4, 5, 6, 8]
    up = np.linspace(0.1, 0.9, 8)
    # ranks of [.1 .3 .2 .4 .5 .6 .7 .9] against 1..8: d = [0,1,-1,0,0,0,0,0], rho = 1 - 6*2/(8*63) = 1 - 12/504
    bumpy = np.array([0.1, 0.3, 0.2, 0.4, 0.5, 0.6, 0.7, 0.9])
    flat = 0.5 + 1e-6 * np.arange(8)  # float noise on a saturated image: not ranked
    m = monotonicity(scales, np.stack([up, up[::-1], flat, bumpy]))
    assert m["seeds"] == 4 and m["undefined"] == 1  # the flat seed has no correlation
    rho_bumpy = 1 - 12 / 504
    assert m["spearman_mean"] == pytest.approx((1 - 1 + rho_bumpy) / 3)
    assert m["spearman_median"] == pytest.approx(rho_bumpy)
    assert m["share_increasing"] == pytest.approx(2 / 3)
    assert m["mean_probability"] == pytest.approx(list((up + up[::-1] + flat + bumpy) / 4))
    assert monotonicity(scales, np.zeros((0, 8)))["seeds"] == 0
    assert math.isnan(monotonicity(scales, np.zeros((0, 8)))["spearman_mean"])


def test_goal_probability_of_additions_removals_and_hair_colour():
    from segakit.eval.sega_study import COLUMNS

    probs = np.zeros((1, len(COLUMNS)), np.float32)
    col = {c: i for i, c in enumerate(COLUMNS)}
    probs[0, col[("expression", "smile")]] = 0.8
    probs[0, col[("hair_color", "gray")]] = 0.5
    probs[0, col[("hair_style", "bald")]] = 0.4
    assert goal_probability(NO_SMILE, probs)[0] == pytest.approx(0.2)
    assert goal_probability(GRAY_HAIR, probs)[0] == pytest.approx(0.5 * 0.6)


def test_isolation_counts_untargeted_changes_only():
    base = {"presentation": "man", "skin": "light", "hair_style": "short", "hair_color": "black", "bangs": True,
            "glasses": False, "expression": "neutral", "beard": False, "hat": False, "makeup": False, "role": "none",
            "horror": False}  # fmt: skip
    glasses_and_smile = {**base, "glasses": True, "expression": "smile"}
    iso = isolation([base, base], [{**base, "glasses": True}, glasses_and_smile], [GLASSES])
    assert iso["unchanged"] == pytest.approx((1 + 10 / 11) / 2)  # 11 untargeted attributes
    assert iso["all_unchanged"] == 0.5 and iso["changed"]["expression"] == 0.5 and "glasses" not in iso["changed"]
    # a bald head loses colour and bangs by construction: not side effects
    bald = {**base, "hair_style": "bald", "hair_color": "gray", "bangs": False}
    assert isolation([base], [bald], [BALD])["unchanged"] == 1.0
    assert BALD.achieved(bald) and not GRAY_HAIR.present(bald)  # no hair colour on a bald head
    assert WOMAN.rewrite("a face of a person") == "a face of a woman"
    assert GLASSES.rewrite("a face of a person") == "a face of a person, wearing glasses"


def test_rates_and_table_two_bookkeeping():
    s = np.array([[1, 1, 1, 1], [1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 0]], dtype=bool)
    assert at_least(s) == {"1": 0.75, "2": 0.75, "3": 0.5, "4": 0.25}  # successes per seed: 4, 2, 0, 3
    r = rate([True, True, False, True])
    assert (r["k"], r["n"], r["rate"]) == (3, 4, 0.75) and r["ci95"][0] < 0.75 < r["ci95"][1]
    lo, hi = wilson(45, 50)  # hand-computed Wilson interval: 0.7864 .. 0.9565
    assert lo == pytest.approx(0.7864, abs=1e-4) and hi == pytest.approx(0.9565, abs=1e-4)
    assert math.isnan(rate([])["rate"])


def test_composition_where_both_methods_succeeded():
    plain = {"glasses": False, "hair_style": "short", "hair_color": "brown"}
    base = {a: v[0] for a, v in ATTRIBUTES.items()}
    off, on = {**base, **plain}, {**base, **plain, "glasses": True}
    # three seeds: both succeed on seed 0, only SEGA on seed 1, only the rewrite on seed 2
    sega = {
        "idx": np.array([0, 1, 2]),
        "labels": encode([on, on, off]),
        "ssim": np.array([0.9, 0.8, 0.99]),
        "rmse": np.array([0.1, 0.2, 0.01]),
        "cosine": np.array([0.95, 0.9, 1.0]),
    }
    rewrite = {
        "idx": np.array([0, 1, 2]),
        "labels": encode([on, off, on]),
        "ssim": np.array([0.6, 0.5, 0.4]),
        "rmse": np.array([0.3, 0.4, 0.5]),
        "cosine": np.array([0.7, 0.6, 0.5]),
    }
    b = both_succeeded(sega, rewrite, GLASSES)
    assert b["seeds"] == 1
    assert b["sega"] == pytest.approx({"ssim": 0.9, "rmse": 0.1, "cosine": 0.95})
    assert b["baseline"] == pytest.approx({"ssim": 0.6, "rmse": 0.3, "cosine": 0.7})
    none = both_succeeded({**sega, "labels": encode([off] * 3)}, rewrite, GLASSES)
    assert none["seeds"] == 0 and math.isnan(none["sega"]["ssim"])
    with pytest.raises(ValueError):
        both_succeeded(sega, {**rewrite, "idx": np.array([2, 1, 0])}, GLASSES)


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "args",
    [["--seeds", "0"], ["--steps", "0"], ["--batch", "0"], ["--warmup", "25"], ["--threshold", "1"], ["--scale", "0"],
     ["--sweep-seeds", "0"], ["--target-scale", "moustache=3"], ["--target-scale", "bald"], ["--model", "/no/such/model"],
     ["--guidance-refresh", "0"]],
)  # fmt: skip
def test_bad_input_is_a_user_error_and_writes_nothing(args, tmp_path):
    from segakit.cli.eval import eval_app

    with pytest.raises(UserError):
        eval_app(["sega", "--out", str(tmp_path / "out"), *args], standalone_mode=False)
    assert not (tmp_path / "out").exists()


def test_config_check():
    with pytest.raises(UserError):
        replace(TINY, sweep=(1, 2, 3)).check()  # no 0: the plain image anchors the sweep
    with pytest.raises(UserError):
        replace(TINY, grid_concepts=("glasses", "wings")).check()
    assert TINY.check() is TINY
    assert StudyConfig().seeds == 250 and len(StudyConfig().sweep) >= 8
