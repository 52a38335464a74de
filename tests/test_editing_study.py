"""``segakit eval editing``: the metrics on hand-computed tensors, the MagicBrush-format export, the study's
bookkeeping on a few pairs with very few steps (the cache gives the same numbers back), bad values."""

import json

import numpy as np
import pytest
import torch
from cli_runner import cli
from PIL import Image

from segakit.core.errors import UserError
from segakit.eval.editing_study import (
    NO_EDIT,
    ROUND_TRIP,
    TARGET,
    EditingStudy,
    EditingStudyConfig,
    Methods,
    build_report,
    markdown,
)
from segakit.eval.editing_study.export import edit_mask, write_magicbrush
from segakit.eval.editing_study.items import (
    pair_turn,
    session_turns,
    single_change_pairs,
)
from segakit.eval.editing_study.metrics import attribute_scores, cosine, l1, l2
from segakit.world.pairs import instructed_values
from segakit.world.schema import ATTRIBUTES
from segakit.world.sessions import session_at

pytestmark = pytest.mark.usefixtures("one_thread")


def test_l1_l2_cosine_by_hand():
    x = torch.zeros(2, 3, 2, 2)
    y = torch.zeros(2, 3, 2, 2)
    y[0, 0, 0, 0] = 1.0  # one of 12 values differs by 1
    y[1] = 0.5  # every value differs by 0.5
    assert torch.allclose(l1(x, y), torch.tensor([1 / 12, 0.5], dtype=torch.float64))
    assert torch.allclose(l2(x, y), torch.tensor([1 / 12, 0.25], dtype=torch.float64))
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[0.0, 2.0], [2.0, 2.0]])
    assert torch.allclose(cosine(a, b), torch.tensor([0.0, 1.0], dtype=torch.float64))


def test_attribute_scores_by_hand():
    source = {"glasses": False, "hat": True, "beard": False, "expression": "smile"}
    result = {"glasses": True, "hat": True, "beard": True, "expression": "smile"}
    assert attribute_scores(source, result, {"glasses": True}, ["hat", "beard", "expression"]) == {
        "success": 1.0,
        "follows": 1.0,
        "others_unchanged": 2 / 3,
    }
    assert attribute_scores(source, result, {"glasses": True, "beard": False}, ["hat"]) == {
        "success": 0.0,
        "follows": 0.0,
        "others_unchanged": 1.0,
    }
    # "give her darker skin" from medium, gold tone dark: medium-dark misses the gold tone but follows the instruction
    darker = instructed_values("skin", "medium", "dark", "give her darker skin")
    assert darker == ("medium-dark", "dark") and instructed_values(
        "skin", "medium", "light", "make her skin lighter"
    ) == ("light", "medium-light")
    assert instructed_values("skin", "medium", "dark", "give her dark skin") == ("dark",)  # it names the tone
    assert instructed_values("glasses", False, True, "give her glasses") == (True,)
    got = attribute_scores({"skin": "medium"}, {"skin": "medium-dark"}, {"skin": "dark"}, [], {"skin": darker})
    assert got["success"] == 0.0 and got["follows"] == 1.0
    assert (
        attribute_scores({"skin": "medium"}, {"skin": "medium"}, {"skin": "dark"}, [], {"skin": darker})["follows"]
        == 0.0
    )


def test_magicbrush_export(tmp_path):
    pair = single_change_pairs(1, 0)[0]
    session = session_turns(session_at(0, 0, turns=2))
    write_magicbrush(tmp_path / "single", [[pair_turn(pair)]])
    folder = write_magicbrush(tmp_path / "multi", [session])
    sessions = json.loads((folder / "edit_sessions.json").read_text())
    captions = json.loads((folder / "global_descriptions.json").read_text())
    assert list(sessions) == ["000000"]
    turns = sessions["000000"]
    assert [t["input"] for t in turns] == ["000000-input.png", "000000-output1.png"]  # turn 2 edits turn 1's output
    assert [t["output"] for t in turns] == ["000000-output1.png", "000000-output2.png"]
    assert [t["instruction"] for t in turns] == [t.instruction for t in session]
    assert captions["000000"]["000000-output2.png"] == session[1].target_caption
    d = folder / "images" / "000000"
    mask = np.asarray(Image.open(d / turns[1]["mask"]))
    a, b = (np.asarray(Image.open(d / turns[1][k])) for k in ("input", "output"))
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    assert np.array_equal(mask == 255, np.any(a != b, axis=-1)) and mask.any()
    single = json.loads((tmp_path / "single" / "edit_sessions.json").read_text())
    key = f"{pair.index:06d}"
    assert single[key][0]["instruction"] == pair.instruction
    assert np.array_equal(
        np.asarray(Image.open(tmp_path / "single" / "images" / key / f"{key}-output1.png")),
        np.asarray(pair.target_image),
    )
    assert edit_mask(pair.source_image, pair.source_image).getextrema() == (0, 0)


@pytest.fixture(scope="module")
def study_parts():
    from pathlib import Path

    from segakit.core.loading import resolve
    from segakit.editing.pipeline import EditPipeline
    from segakit.eval.editing_study.metrics import ClipScorer
    from segakit.world.oracle import Oracle

    torch.set_num_threads(1)
    return (
        EditPipeline.from_pretrained("embedded"),
        Oracle.load(),
        ClipScorer.from_folder(Path(resolve("embedded")) / "clip"),
    )


def test_study_bookkeeping_and_cache_reuse(study_parts, tmp_path):
    import copy

    pipe, oracle, clip = study_parts
    pipe = copy.copy(pipe)
    pipe.caption_writer = None  # a model without a caption writer: onthefly-lm is reported unavailable, never faked
    cfg = EditingStudyConfig(
        pairs=1, sessions=1, turns=2, steps=2, methods=("sega", "onthefly-lm", "regenerate"), figure_rows=2
    )
    first = EditingStudy(Methods(pipe, cfg), oracle, clip, cfg, tmp_path / "cache").run()
    assert first["available"] == {
        "sega": True,
        "onthefly-lm": False,
        "regenerate": True,
    }  # no caption writer: not faked
    assert first["run"]["edits"] == 2 * (1 + 2) and first["run"]["edits_from_cache"] == 0
    rows = first["records"]
    assert {r["method"] for r in rows} == {NO_EDIT, ROUND_TRIP, TARGET, "sega", "regenerate"}
    multi = [r for r in rows if r["protocol"] == "multi-turn" and r["method"] == "sega"]
    assert [r["turn"] for r in multi] == [1, 2]
    assert all(r["concepts"] for r in rows if r["method"] == "sega")
    for r in rows:
        assert 0 <= r["success"] <= 1 and 0 <= r["others_unchanged"] <= 1 and r["l2"] <= r["l1"] + 1e-12
        others = len(ATTRIBUTES) - len(r["changes"]) if r["turn"] == 1 else None  # single turns and first turns
        if others:  # the attributes it lists as changed are exactly what "others unchanged" misses
            assert r["others_unchanged"] == pytest.approx(1 - len(r["others_changed"]) / others)
    no_edit = [r for r in rows if r["method"] == NO_EDIT]
    assert all(r["ssim_source"] == pytest.approx(1.0) and r["success"] == 0 for r in no_edit)
    (trip,) = [r for r in rows if r["method"] == ROUND_TRIP]  # single turns only: the autoencoder alone
    assert trip["success"] == 0 and 0.5 < trip["ssim_source"] < 1
    target = [r for r in rows if r["method"] == TARGET]  # single turns only; the oracle reads the gold render's change
    assert len(target) == 1 and target[0]["success"] == 1 and target[0]["l1"] == 0
    again = EditingStudy(Methods(pipe, cfg), oracle, clip, cfg, tmp_path / "cache").run()
    assert again["run"]["edits_from_cache"] == again["run"]["edits"] == first["run"]["edits"]
    assert again["records"] == first["records"]  # the same numbers, wall times included
    report = build_report(again, "segakit eval editing --pairs 1", "embedded")
    assert report["summary"]["onthefly-lm"] == {"available": False}
    assert report["model"]["model"] == first["fingerprints"]["model"] and report["seeds"]["pairs"] == first["pairs"]
    text = markdown(report)
    assert "| onthefly-lm | not available" in text and "segakit eval editing --pairs 1" in text
    turn = first["single"][0]
    u8 = np.asarray(turn.input_image).transpose(2, 0, 1)
    keys = set()
    for change in ({}, {"steps": 3}, {"sega_scale": 7.0}):
        c = EditingStudyConfig(**{**cfg.__dict__, **change})
        study = EditingStudy(Methods(pipe, c), oracle, clip, c, tmp_path / "cache")
        keys.add(study.cache.path(study._unit("sega", turn, u8)).name)
    assert len(keys) == 3  # the settings are in the key: a changed one is computed afresh


def test_ddpm_methods_run_and_only_they_depend_on_ddpm_guidance_and_mask(study_parts, tmp_path):
    pipe, oracle, clip = study_parts
    cfg = EditingStudyConfig(
        pairs=1, sessions=0, steps=2, methods=("onthefly-gold-ddpm", "onthefly-gold"), figure_rows=1
    )
    result = EditingStudy(Methods(pipe, cfg), oracle, clip, cfg, tmp_path / "cache").run()
    rows = {r["method"]: r for r in result["records"] if r["protocol"] == "single-turn"}
    assert set(rows) == {NO_EDIT, ROUND_TRIP, TARGET, "onthefly-gold-ddpm", "onthefly-gold"}
    assert rows["onthefly-gold-ddpm"]["captions_after"] == [result["single"][0].target_caption]
    turn = result["single"][0]
    u8 = np.asarray(turn.input_image).transpose(2, 0, 1)
    names = {}
    for g, m in ((3.5, 0.0), (5.0, 0.0), (5.0, 0.95)):
        c = EditingStudyConfig(**{**cfg.__dict__, "ddpm_guidance": g, "ddpm_mask": m})
        study = EditingStudy(Methods(pipe, c), oracle, clip, c, tmp_path / "cache")
        names[g, m] = [study.cache.path(study._unit(k, turn, u8)).name for k in ("onthefly-gold-ddpm", "onthefly-gold")]
    assert len({n[0] for n in names.values()}) == 3 and len({n[1] for n in names.values()}) == 1


def test_the_whole_chain_captions_the_image_itself_and_keys_its_cache_on_the_captioner(study_parts, tmp_path):
    import copy

    pipe, oracle, clip = study_parts
    cfg = EditingStudyConfig(pairs=1, sessions=0, steps=2, methods=("onthefly-auto-ddpm",), figure_rows=1)
    result = EditingStudy(Methods(pipe, cfg), oracle, clip, cfg, tmp_path / "cache").run()
    turn = result["single"][0]
    row = next(r for r in result["records"] if r["method"] == "onthefly-auto-ddpm")
    assert row["captions_before"][0] == pipe.captioner(
        turn.input_image
    )  # caption 1 is the captioner's, not the world's
    assert result["fingerprints"]["captioner"]
    u8 = np.asarray(turn.input_image).transpose(2, 0, 1)
    study = EditingStudy(Methods(pipe, cfg), oracle, clip, cfg, tmp_path / "cache")
    spec = study._unit("onthefly-auto-ddpm", turn, u8).spec
    assert spec["captioner"] == result["fingerprints"]["captioner"] and spec["source_caption"] is None
    bare = copy.copy(pipe)
    bare.captioner = None  # a model without a captioner: the chain is reported unavailable, never faked
    assert not Methods(bare, cfg).available("onthefly-auto-ddpm") and Methods(bare, cfg).available("onthefly-lm-ddpm")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"pairs": 0}, "--pairs 0 is not a whole number of 1 or more"),
        ({"methods": ("sega", "magic")}, "--methods has 'magic', which is not one of"),
        ({"sega_threshold": 1.0}, r"--sega-threshold 1.0 .* must lie in \[0, 1\)"),
        ({"turns": 9}, "--turns 9 is above 6"),
        ({"xa_guidance": -0.1}, "--xa-guidance -0.1 is not 0"),
        ({"mask_tokens": "some"}, "--sega-mask-tokens 'some' is not one of all, concept"),
        ({"sega_mask": "both"}, "--sega-mask 'both' is not one of intersect, attention, noise"),
        ({"blend_dilate": 1}, "--blend-dilate 1 grows the blend's masks; it needs --blend"),
        ({"blend": True, "blend_dilate": 1.5}, "--blend-dilate 1.5 is not a whole number of latent pixels from 0 to 8"),
    ],
)
def test_bad_values_are_one_sentence(kwargs, message):
    from segakit.core.errors import spelling

    with spelling("cli"), pytest.raises(UserError, match=message):  # the study's options are the CLI's
        EditingStudyConfig(**kwargs).check()


def test_cli_bad_value_exit_2_before_loading(monkeypatch, capsys, tmp_path):
    code, _, stderr = cli(monkeypatch, capsys, "eval", "editing", "--methods", "sega,nope", "--out", tmp_path / "o")
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert "'nope'" in stderr and not (tmp_path / "o").exists()


def test_attributes_pick_the_same_pairs_and_refuse_an_unknown_one():
    every = single_change_pairs(30, 0)
    hats = single_change_pairs(3, 0, ("hat", "glasses"))
    assert all(next(iter(p.changes)) in ("hat", "glasses") for p in hats)
    assert [p.index for p in hats] == [p.index for p in every if next(iter(p.changes)) in ("hat", "glasses")][:3]
    with pytest.raises(UserError, match="--attributes has 'hats', which is not one of"):
        EditingStudyConfig(attributes=("hats",)).check()


def test_skin_direction_script_tells_the_gold_tone_from_the_instructed_side():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "editing_skin_direction.py"
    spec = importlib.util.spec_from_file_location("editing_skin_direction", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # SKIN_ORDER runs light .. dark: from medium, "darker" (gold: dark) is met exactly by dark, on its side by medium-dark
    assert module.verdict("medium", "dark", "dark") == "exact"
    assert module.verdict("medium", "dark", "medium-dark") == "right side"
    assert (
        module.verdict("medium", "dark", "medium") == "wrong" and module.verdict("medium", "dark", "light") == "wrong"
    )
    assert module.verdict("medium", "light", "medium-light") == "right side"


def test_by_attribute_counts_success_and_what_follows_the_instruction():
    from segakit.eval.editing_study.report import _attribute_cell
    from segakit.eval.editing_study.summary import summarize

    rows = [{"method": "m", "protocol": "single-turn", "changes": {a: v}, "success": s, "follows": f}
            for a, v, s, f in [("skin", "dark", 0.0, 1.0), ("skin", "dark", 1.0, 1.0), ("skin", "light", 0.0, 0.0),
                               ("hat", True, 1.0, 1.0), ("hat", True, 0.0, 0.0)]]  # fmt: skip
    single = summarize(rows, ["m"], {})["m"]["single"]
    assert single["by_attribute"] == {"hat": [1, 2], "skin": [1, 3]}
    assert single["follows_by_attribute"] == {"hat": [1, 2], "skin": [2, 3]}
    assert single["success"] == pytest.approx(0.4) and single["follows"] == pytest.approx(0.6)
    assert _attribute_cell(single, "skin") == "1/3 (2)" and _attribute_cell(single, "hat") == "1/2"
    assert _attribute_cell(single, "glasses") == "-"
