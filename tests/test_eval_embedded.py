"""The embedded-model quality table's machinery, on small random components and a random oracle."""

import json

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from tiny_models import sd_components

from segakit import SegaPipeline
from segakit.eval.embedded_quality import (
    ADDITIONS,
    QualityConfig,
    faithfulness_prompts,
    run_all,
    total_images,
    write_report,
)
from segakit.eval.frechet import frechet_distance


def test_frechet_distance_against_scipy_sqrtm_form():
    from scipy import linalg

    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 5)) @ rng.normal(size=(5, 5))
    b = rng.normal(size=(300, 5)) * 2 + 1
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(sa @ sb).real  # the classic FID formula
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(sa) + np.trace(sb) - 2 * np.trace(covmean)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # 1-D Gaussians: (mu_a - mu_b)^2 + (sd_a - sd_b)^2, with sample moments
    x, y = rng.normal(size=(500, 1)), 3 + 2 * rng.normal(size=(500, 1))
    by_hand = (x.mean() - y.mean()) ** 2 + (x.std(ddof=1) - y.std(ddof=1)) ** 2
    assert frechet_distance(x, y) == pytest.approx(by_hand, rel=1e-9)


def test_faithfulness_prompts_name_one_to_three_values():
    prompts = faithfulness_prompts(30, seed=0)
    assert len(prompts) == 30 and all(1 <= len(named) <= 3 and text for text, named in prompts)
    assert prompts == faithfulness_prompts(30, seed=0)


def test_quality_table_runs_end_to_end(tmp_path, monkeypatch):
    from segakit.eval import embedded_quality as eq
    from segakit.world.oracle import Oracle, OracleNet

    plain = StableDiffusionPipeline(
        **sd_components(tmp_path / "c"), safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipe = SegaPipeline.from_pipe(plain)
    pipe.set_progress_bar_config(disable=True)
    oracle = Oracle(OracleNet())  # random weights: this tests the bookkeeping, not the numbers
    cfg = QualityConfig(
        steps=2,
        n_prompts=2,
        prompt_seeds=1,
        prior_seeds=3,
        fid_n=6,
        sega_seeds=2,
        sega_scan=6,
        batch=4,
        guidance_sweep=(3.0,),
        te_captions=120,
        te_images=0,
    )
    calls, real = [], eq.sample_images

    def spy(pipe, prompt, seeds, steps, guidance, batch, edits=(), progress=None, **kwargs):
        calls.append((prompt, len(seeds), bool(edits)))
        return real(pipe, prompt, seeds, steps, guidance, batch, edits, progress, **kwargs)

    monkeypatch.setattr(eq, "sample_images", spy)
    counted = []
    figures = {}
    report = run_all(pipe, oracle, cfg, progress=counted.append, figures=figures)
    plain_neutral = sum(n for prompt, n, edited in calls if prompt == cfg.prompt and not edited)
    assert plain_neutral == 6  # prior (3), Frechet (6) and SEGA scan (6) share one set of plain images
    assert sum(counted) == sum(n for _, n, _ in calls) <= total_images(cfg) == 2 * 2 + 6 + 2 * (len(ADDITIONS) + 1)
    assert set(report["faithfulness_by_guidance"]) == {"7.5", "3.0"}
    side = report["text_side"]["per_attribute"]
    assert side["presentation"]["separation_ratio"] == pytest.approx(1.0) and "zero_shot_auc" not in side["glasses"]
    assert 0 <= report["text_faithfulness"]["present"] <= 1
    assert 0 <= report["prior_fidelity"]["max_abs_diff"] <= 1
    assert np.isfinite(report["image_quality"]["fd_generated_vs_rendered"])
    assert set(report["sega"]["targets"]) >= {"glasses", "smile", "other gender"}
    assert set(figures) == {"samples-neutral.png", "samples-prompts.png", "sega-additions.png"}
    paths = write_report(report, tmp_path / "r", "segakit eval embedded --quick", figures)
    assert {p.name for p in paths} >= set(figures) and all(p.is_file() for p in paths)
    assert json.loads(paths[0].read_text())["config"]["steps"] == 2
    text = paths[1].read_text()
    assert (
        "| text faithfulness" in text and "| attribute | separation / man-woman |" in text and "faithful @ 3.0" in text
    )
    assert "fingerprint" not in text  # no model field: no words about it
    named = write_report({"model": {"name": "embedded", "fingerprint": "abc123"}, **report}, tmp_path / "m", "c", {})
    assert "Produced by `c`. Model `embedded`, weights fingerprint `abc123`." in named[1].read_text()


def test_sega_isolation_pairs_each_edit_with_its_own_plain_image(monkeypatch):
    """Edits that change nothing: every target fails and keeps every untargeted attribute (isolation 1)."""
    from segakit.eval import embedded_quality as eq
    from segakit.world.schema import ATTRIBUTES

    def by_seed(pipe, prompt, seeds, steps, guidance, batch, edits=(), progress=None, **kwargs):
        return torch.stack([torch.full((3, 64, 64), float(s % 997)) for s in seeds])

    class ReadsTheSeed:  # a different, fixed label set per image: pairing up the wrong images shows
        def predict(self, images):
            out = []
            for x in images:
                rng = np.random.default_rng(int(x[0, 0, 0]))
                out.append({a: vals[rng.integers(len(vals))] for a, vals in ATTRIBUTES.items()})
            return out

    monkeypatch.setattr(eq, "sample_images", by_seed)
    res = eq.sega_success(None, ReadsTheSeed(), QualityConfig(sega_seeds=4, sega_scan=12))["targets"]
    assert all(v["seeds"] for v in res.values())
    assert all(v["success"] == 0.0 and v["isolation"] == 1.0 for v in res.values())


def test_sega_rewrite_baseline_draws_the_rewritten_prompt_without_edits(monkeypatch):
    from segakit.eval import embedded_quality as eq
    from segakit.world.schema import ATTRIBUTES

    calls = []

    def by_seed(pipe, prompt, seeds, steps, guidance, batch, edits=(), progress=None, **kwargs):
        calls.append((prompt, tuple(edits)))
        return torch.stack([torch.full((3, 64, 64), float(s % 997)) for s in seeds])

    class Nothing:  # reads every binary attribute as absent, so every binary target has seeds lacking it
        def predict(self, images):
            return [{a: vals[0] for a, vals in ATTRIBUTES.items()} for _ in images]

    monkeypatch.setattr(eq, "sample_images", by_seed)
    eq.sega_success(None, Nothing(), QualityConfig(sega_seeds=2, sega_scan=4), rewrite=True)
    drawn = {prompt for prompt, edits in calls[1:]}
    assert all(not edits for _, edits in calls)
    assert "a face of a person, wearing glasses" in drawn and "a face of a woman" in drawn


@pytest.mark.parametrize("args, words", [
    (["--guidance-sweep", "3,x"], "'3,x' is not a comma-separated list"),
    (["--guidance-sweep", "0.5"], "below 1"),
    (["--te-captions", "-1"], "use 0 or more"),
])  # fmt: skip
def test_eval_embedded_refuses_bad_sweeps_in_one_sentence(monkeypatch, capsys, tmp_path, args, words):
    from cli_runner import cli

    code, out, err = cli(monkeypatch, capsys, "eval", "embedded", "--out", tmp_path / "r", *args)
    assert code == 2 and words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
