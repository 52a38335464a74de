"""The directions study's bookkeeping on small random components, a random library and a random oracle (issue 16)."""

import json
from dataclasses import replace

import pytest
import torch

from segakit import SegaPipeline
from segakit.core.fingerprint import fingerprint
from segakit.core.hooks import mid_block_shape
from segakit.directions import Direction
from segakit.directions.library import Library
from segakit.eval.directions_study import (
    DirectionsStudyConfig,
    Progress,
    run_study,
    total_images,
)
from segakit.eval.directions_study import measures as m
from segakit.eval.sega_study.summary import json_ready
from segakit.sega.fair import FairDiffusion

NAMES = ["presentation=man", "presentation=woman", "skin=dark", "skin=light", "horror=false"]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_deviation_ratio_and_follows_by_hand():
    labels = [{"presentation": "man"}] * 3 + [{"presentation": "woman"}]
    assert m.deviation_ratio(labels, "presentation") == pytest.approx(0.5)  # |0.75 - 0.5| / 0.5
    assert m.deviation_ratio(labels[:2] + labels[3:], "presentation") == pytest.approx(1 / 3)
    skin = [{"skin": v} for v in ("light", "medium-light", "medium", "medium-dark", "dark")]
    assert m.deviation_ratio(skin, "skin") == 0.0 and m.deviation_ratio(skin[:1] * 4, "skin") == pytest.approx(1.0)
    choices = ["man", "woman", "woman", "woman"]
    assert m.follows(labels, "presentation", choices) == 0.5
    assert m.follows_by_value(labels, "presentation", choices) == {"man": 1.0, "woman": pytest.approx(1 / 3)}
    assert m.removed(0.8, 0.2) == pytest.approx(0.75) and m.parse_key("glasses=true") == ("glasses", True)


def rounded(x):
    """Floats to 9 digits (SSIM's last bit may differ between a tensor made and the same tensor read back)."""
    if isinstance(x, float):
        return round(x, 9)
    if isinstance(x, dict):
        return {k: rounded(v) for k, v in x.items()}
    return [rounded(v) for v in x] if isinstance(x, list) else x


class Counter(Progress):
    def __init__(self) -> None:
        self.images, self.units = 0, []

    def unit(self, name: str) -> None:
        self.units.append(name)

    def advance(self, images: int) -> None:
        self.images += images


def test_study_runs_every_section_and_resumes_from_its_cache(tmp_path):
    from diffusers import StableDiffusionPipeline
    from tiny_models import sd_components

    from segakit.world.oracle import Oracle, OracleNet

    torch.manual_seed(0)
    plain = StableDiffusionPipeline(
        **sd_components(tmp_path / "c"), safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipe = SegaPipeline.from_pipe(plain)
    pipe.set_progress_bar_config(disable=True)
    shape = mid_block_shape(pipe.unet, 32, 32, pipe.vae_scale_factor)
    (tmp_path / "lib").mkdir()
    files = {}
    for k, name in enumerate(NAMES):
        d = Direction(
            torch.randn(shape, generator=torch.Generator().manual_seed(k)),
            name,
            {"unet": fingerprint(pipe.unet), "images": 8, "steps": 5},
        )
        files[name] = d.save(tmp_path / "lib" / f"{name.replace('=', '-')}.safetensors").name
    (tmp_path / "lib" / "library.json").write_text(json.dumps({"directions": files, "strength": 0.5}))
    library = Library.load(tmp_path / "lib")
    oracle = Oracle(OracleNet())  # random weights: this tests the bookkeeping, not the numbers
    cfg = DirectionsStudyConfig(seeds=3, first_seed=5, steps=2, batch=2, sweep_seeds=2, sweep_strengths=(0.0, 1.0), timing_repeats=1,
                                roles=("a doctor", "a face of a person"), horror_prompts=("a zombie", "an undead person"),
                                clean_prompts=("a doctor",), enhance=(("presentation=woman", "a face of a woman"), ("glasses=true", "a face of a person wearing glasses")),
                                sweeps=(("presentation=woman", "a face of a person"), ("hat=true", "a face of a person")))  # fmt: skip
    progress = Counter()
    report, paths = run_study(
        pipe, oracle, library, cfg, tmp_path / "out", "segakit eval directions --seeds 3", progress, model_name="tiny"
    )
    r = report["results"]
    assert 0 < progress.images <= total_images(cfg)
    # fairness: both fair methods draw the same values per image; every measure in range
    entry = r["fairness"]["by_role"]["a doctor"]["presentation"]
    drawn = FairDiffusion.draw("presentation", 3, 5).choices
    assert (
        entry["fair-directions"]["drawn"]
        == entry["fair-sega"]["drawn"]
        == entry["fair-rewrite"]["drawn"]
        == {v: drawn.count(v) / 3 for v in sorted(set(drawn))}
    )
    for method in ("plain", "fair-directions", "fair-sega", "fair-rewrite"):
        assert 0 <= entry[method]["deviation_ratio"] <= 1 and sum(entry[method]["shares"].values()) == pytest.approx(1)
    assert 0 <= entry["fair-sega"]["others_unchanged"] <= 1 and -1 <= entry["fair-directions"]["ssim"] <= 1
    assert set(r["fairness"]["summary"]) == {"presentation", "skin"}
    assert set(r["fairness"]["summary"]["skin"]) == {"plain", "fair-directions", "fair-sega", "fair-rewrite"}
    # safety: every arm on every horror prompt; collateral for all but plain; removal against plain
    s = r["safety"]
    assert set(s["summary"]) == {
        "plain",
        "anti-horror direction",
        "SLD weak",
        "SLD medium",
        "SLD strong",
        "SLD max",
        "negative prompt",
        "SEGA reverse edit",
    }
    assert (
        set(s["horror_by_prompt"]["SLD max"]) == {"a zombie", "an undead person"}
        and "plain" not in s["collateral_by_prompt"]
    )
    # enhance: a value with a direction is measured with it; one without is reported missing
    assert r["enhance"]["by_value"]["presentation=woman"]["directions"] == ["presentation=woman"]
    assert r["enhance"]["by_value"]["glasses=true"]["with"] is None and r["enhance"]["missing_directions"] == [
        "glasses=true"
    ]
    assert r["monotonicity"]["hat=true"]["missing"] and r["monotonicity"]["presentation=woman"]["seeds"] == 2
    assert set(r["composition"]["together"]["each"]) == {"presentation=woman", "skin=dark"}
    assert r["cost"]["ratio"] > 0 and r["cost"]["learning"]["skin=dark"] == {
        "images": 8,
        "steps": 5,
        "seconds_generating": None,
        "seconds_learning": None,
    }
    # the report: json with seeds, command, wall times, fingerprints; markdown; figures
    names = {p.name for p in paths}
    assert {"report.json", "report.md", "safety.png", "sweep.png", "fairness-a-doctor.png"} <= names
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["command"] == "segakit eval directions --seeds 3" and saved["seeds"]["first"] == 5
    assert saved["model"]["unet"] == fingerprint(pipe.unet) and saved["wall_seconds"]["total"] > 0
    text = (tmp_path / "out" / "report.md").read_text()
    assert (
        "| presentation | Fair Diffusion (SEGA) |" in text
        and "| SLD strong |" in text
        and "no direction in the library" in text
    )
    # a rerun reads every image set from the cache and reports the same numbers
    again, _ = run_study(
        pipe, oracle, library, cfg, tmp_path / "out", "segakit eval directions --seeds 3", Counter(), model_name="tiny"
    )
    assert again["shots"]["made"] == 0 and again["shots"]["from_cache"] == report["shots"]["made"]
    same = lambda key: rounded(json_ready(again["results"][key])) == rounded(json_ready(r[key]))
    assert same("fairness") and same("safety") and same("monotonicity")
    # relearning one direction (here: the anti-horror one, now used at its own strength) remakes only the shots
    # that add it; the plain model's, the peers' and the other directions' come from the cache
    d = Direction(
        torch.randn(shape, generator=torch.Generator().manual_seed(99)),
        "horror=false",
        {"unet": fingerprint(pipe.unet)},
    )
    d.save(tmp_path / "lib" / files["horror=false"])
    (tmp_path / "lib" / "library.json").write_text(
        json.dumps({"directions": files, "strength": 0.5, "strengths": {"horror=false": 2.0}})
    )
    cfg_safety = replace(cfg, sections=("safety",))
    third, _ = run_study(pipe, oracle, Library.load(tmp_path / "lib"), cfg_safety, tmp_path / "out2", "c", Counter(), model_name="tiny",
                        cache=tmp_path / "out" / "cache")  # fmt: skip
    horror_shots = len(cfg.horror_prompts) + len(cfg.clean_prompts)  # the anti-horror arm on each prompt
    assert third["shots"]["made"] == horror_shots and third["shots"]["from_cache"] > 0
    assert third["model"]["strengths"] == {"horror=false": 2.0}
    # new edit defaults for the model remake only the shots whose SEGA edits take them (the reverse edit's)
    from segakit.sega.guidance import Edit

    pipe.edit_defaults = Edit(scale=3.0, threshold=0.5, warmup=1)
    fourth, _ = run_study(pipe, oracle, Library.load(tmp_path / "lib"), cfg_safety, tmp_path / "out3", "c", Counter(), model_name="tiny",
                          cache=tmp_path / "out" / "cache")  # fmt: skip
    assert fourth["shots"]["made"] == horror_shots and fourth["shots"]["from_cache"] == third["shots"]["from_cache"]


@pytest.mark.parametrize("kwargs, words", [({"seeds": 0}, "--seeds 0"), ({"strength": -1.0}, "--strength -1.0"),
                                           ({"sections": ("fairness", "speed")}, "choose from"),
                                           ({"sweep_strengths": (1.0,)}, "two or more strengths")])  # fmt: skip
def test_config_refuses_bad_values_in_one_sentence(kwargs, words):
    from segakit.core.errors import UserError

    with pytest.raises(UserError, match=words):
        DirectionsStudyConfig(**kwargs).check()


@pytest.mark.parametrize("args, words", [(["--seeds", "0"], "--seeds 0 is not a whole number"), (["--sections", "speed"], "choose from"),
                                         (["--threads", "-1"], "--threads -1 is below 0")])  # fmt: skip
def test_cli_refuses_bad_values_before_loading_anything(monkeypatch, capsys, tmp_path, args, words):
    from cli_runner import cli

    code, _, err = cli(monkeypatch, capsys, "eval", "directions", "--out", tmp_path / "r", *args)
    assert code == 2 and words in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_rewrite_reference_names_each_images_drawn_value():
    from segakit.eval.directions_study.config import fair_arms
    from segakit.eval.directions_study.render import Bench, _chunk

    calls = []

    class Pipe:  # records what it was asked for
        def __call__(self, prompt, **kw):
            calls.append((prompt, [g.initial_seed() for g in kw["generator"]]))
            return type("Out", (), {"images": torch.zeros(len(prompt), 3, 8, 8)})()

    arm = fair_arms("skin")[2]
    assert arm.kind == "fair-rewrite"
    _chunk(Bench(Pipe(), None, DirectionsStudyConfig(steps=2)), arm, "a doctor", [7, 8, 9], None)
    words = FairDiffusion.draw("skin", 3, 7)
    assert calls == [([f"a doctor, {words.words[v]}" for v in words.choices], [7, 8, 9])]
