"""Calibrating fair generation (segakit's addition to issue 16): choosing recipes by what the images show, and the
library applying them."""

import json

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from segakit.directions import Direction
from segakit.directions.calibrate import balanced_draw, candidates, choose, expected_shares, share
from segakit.directions.library import Library
from segakit.train.directions import _drop_calibration

VALUES = ["light", "medium", "dark"]


def test_candidates_are_every_direction_at_each_strength_then_every_pair():
    got = candidates(["a", "b", "c"], [0.5, 1], pair_strength=0.5)
    assert got[:6] == [(("a", 0.5),), (("a", 1.0),), (("b", 0.5),), (("b", 1.0),), (("c", 0.5),), (("c", 1.0),)]
    assert got[6:] == [(("a", 0.5), ("b", 0.5)), (("a", 0.5), ("c", 0.5)), (("b", 0.5), ("c", 0.5))]
    assert len(candidates(["a", "b", "c"], [0.5], None)) == 3


def test_each_value_gets_the_recipe_that_shows_it_most_and_ties_go_to_the_simpler_one():
    light, medium, dark = (("skin=light", 0.5),), (("skin=medium", 0.5),), (("skin=dark", 0.5),)
    strong_dark = (("skin=dark", 1.0),)
    pair = (("skin=medium", 0.5), ("skin=dark", 0.5))
    reads = {
        light: ["light"] * 4,
        medium: ["light"] * 3 + ["medium"],  # the medium direction draws its lighter neighbour
        dark: ["dark"] * 4,
        strong_dark: ["dark"] * 4,  # as good as at 0.5: the lower strength wins
        pair: ["medium"] * 3 + ["dark"],
    }
    got = choose(reads, VALUES)
    assert got["light"] == (light, 1.0) and got["dark"] == (dark, 1.0)
    assert got["medium"] == (pair, 0.75)
    shares = expected_shares({v: r for v, (r, _) in got.items()}, reads, VALUES)
    assert shares == pytest.approx({"light": 1 / 3, "medium": 0.25, "dark": 1 / 3 + 1 / 12})
    with pytest.raises(ValueError):
        choose({}, VALUES)
    # within the margin the simpler recipe wins, then the value's own direction
    near = choose(reads, VALUES, margin=0.25, prefer={"dark": strong_dark})
    assert near["medium"] == (pair, 0.75) and near["dark"] == (dark, 1.0)  # one direction at 0.5 beats one at 1
    own = {"medium": medium}
    reads[(("skin=light", 0.5), ("skin=medium", 0.25))] = ["medium"] * 4
    assert choose(reads, VALUES, margin=0.25, prefer=own)["medium"][1] == 1.0  # 0.75 is not within 0.25 of 1
    reads[(("skin=other", 0.5),)] = ["medium"] * 2 + ["light"] * 2
    assert choose(reads, VALUES, margin=0.8, prefer=own)["medium"] == (medium, 0.25)  # simplest, then its own


@given(st.dictionaries(st.integers(0, 5), st.lists(st.sampled_from(VALUES), min_size=1, max_size=8), min_size=1))
def test_the_chosen_recipe_shows_its_value_at_least_as_often_as_any_other(raw):
    reads = {((f"d{k}", 0.5),): r for k, r in raw.items()}
    got = choose(reads, VALUES)
    for v, (recipe, s) in got.items():
        assert s == share(reads[recipe], v) == max(share(r, v) for r in reads.values())
    assert sum(expected_shares({v: r for v, (r, _) in got.items()}, reads, VALUES).values()) == pytest.approx(1.0)


def test_the_balanced_draw_evens_out_what_the_images_show():
    # light's recipe always shows light; medium's shows medium half the time and light otherwise; dark's always dark
    a, b, c = (("l", 1.0),), (("m", 1.0),), (("d", 1.0),)
    reads = {a: ["light"] * 4, b: ["medium", "light"] * 2, c: ["dark"] * 4}
    plan = {"light": a, "medium": b, "dark": c}
    assert max(abs(x - 1 / 3) for x in expected_shares(plan, reads, VALUES).values()) == pytest.approx(1 / 6)
    draw = balanced_draw(plan, reads, VALUES)
    assert draw == pytest.approx({"light": 0.0, "medium": 2 / 3, "dark": 1 / 3}, abs=1e-6)  # by hand: exactly even
    assert expected_shares(plan, reads, VALUES, draw) == pytest.approx(dict.fromkeys(VALUES, 1 / 3), abs=1e-6)


@given(st.lists(st.lists(st.sampled_from(VALUES), min_size=1, max_size=6), min_size=3, max_size=3))
def test_the_balanced_draw_is_a_distribution_never_worse_than_equal_draws(raw):
    plan = {v: ((f"d{k}", 1.0),) for k, v in enumerate(VALUES)}
    reads = {plan[v]: r for v, r in zip(VALUES, raw)}
    draw = balanced_draw(plan, reads, VALUES)
    assert min(draw.values()) >= 0 and sum(draw.values()) == pytest.approx(1.0)
    dev = lambda d: max(abs(x - 1 / 3) for x in expected_shares(plan, reads, VALUES, d).values())  # noqa: E731
    assert dev(draw) <= dev(None) + 1e-9


def _library(tmp_path, recipes=None):
    shape = (4, 2, 2)
    files = {}
    for k, v in enumerate(VALUES):
        d = Direction(torch.randn(shape, generator=torch.Generator().manual_seed(k)), f"skin={v}")
        files[f"skin={v}"] = d.save(tmp_path / f"skin-{v}.safetensors").name
    index = {"directions": files, "strength": 0.5, "strengths": {"skin=dark": 0.25}}
    if recipes is not None:
        index["recipes"] = recipes
    (tmp_path / "library.json").write_text(json.dumps(index))
    return Library.load(tmp_path), shape


def test_fair_generation_adds_each_drawn_values_recipe_unless_a_strength_is_given(tmp_path):
    lib, shape = _library(tmp_path, {"skin=medium": [["skin=medium", 0.5], ["skin=dark", 0.5]]})
    assert lib.recipe("skin=medium") == [("skin=medium", 0.5), ("skin=dark", 0.5)]
    assert lib.recipe("skin=dark") == [("skin=dark", 0.25)] and lib.recipe("skin=light") == [("skin=light", 0.5)]
    fair = lib.fair("skin", 30, 0)
    rows = fair.offset(30, shape, "cpu", torch.float32)
    vec = {v: lib.direction(f"skin={v}").vector for v in VALUES}
    want = {"light": 0.5 * vec["light"], "medium": 0.5 * vec["medium"] + 0.5 * vec["dark"], "dark": 0.25 * vec["dark"]}
    assert set(fair.choices) == set(VALUES)
    for row, value in zip(rows, fair.choices):
        assert torch.allclose(row, want[value])
    plain = lib.fair("skin", 30, 0, strength=1.0).offset(30, shape, "cpu", torch.float32)
    for row, value in zip(plain, fair.choices):  # an explicit strength: every value's own direction at it
        assert torch.allclose(row, vec[value])


def test_relearning_a_direction_drops_its_attributes_calibration_only(capsys):
    index = {"recipes": {"skin=medium": [["skin=dark", 0.5]], "presentation=man": [["presentation=man", 2.0]]},
             "calibration": {"skin": {"seeds": 16}, "presentation": {"seeds": 16}}}  # fmt: skip
    _drop_calibration(index, "skin")
    assert index == {
        "recipes": {"presentation=man": [["presentation=man", 2.0]]},
        "calibration": {"presentation": {"seeds": 16}},
    }
    assert "rerun python -m segakit.train.calibrate_directions --attribute skin" in capsys.readouterr().out
    _drop_calibration(index, "glasses")
    assert "glasses" not in capsys.readouterr().out


def test_the_shipped_librarys_skin_calibration_names_its_own_directions_and_draws_a_distribution():
    lib = Library.load()
    draw = lib.draw_shares("skin")
    assert (
        draw is not None and set(draw) == set(lib.values("skin")) and sum(draw.values()) == pytest.approx(1.0, abs=1e-3)
    )
    for value in lib.values("skin"):
        for name, strength in lib.recipe(f"skin={value}"):
            assert name in lib.files and strength > 0
    cal = lib.meta["calibration"]["skin"]
    assert cal["first_seed"] >= 1000 and cal["command"].startswith("python -m segakit.train.calibrate_directions")
    # the study and benchmarks evaluate on seeds 0..199 and 7000..: calibration stays off them
    assert not set(range(cal["first_seed"], cal["first_seed"] + cal["seeds"])) & (
        set(range(200)) | set(range(7000, 7200))
    )
    fair = lib.fair("skin", 100, 0)
    assert "light" not in fair.choices or draw["light"] > 0  # the calibrated shares are what is drawn by default
    assert set(lib.fair("skin", 100, 0, strength=0.5).choices) == set(
        lib.values("skin")
    )  # explicit strength: equal shares


def test_the_calibration_recipe_writes_recipes_draws_and_what_it_read(tmp_path):
    from cli_runner import sd_folder

    from segakit import SegaPipeline
    from segakit.core.errors import UserError
    from segakit.core.fingerprint import fingerprint
    from segakit.core.hooks import mid_block_shape
    from segakit.train.calibrate_directions import main

    folder = sd_folder(tmp_path)
    pipe = SegaPipeline.from_pretrained(folder)
    shape = mid_block_shape(pipe.unet, 32, 32, pipe.vae_scale_factor)
    lib = tmp_path / "lib"
    lib.mkdir()
    files = {}
    for k, v in enumerate(["light", "dark"]):
        d = Direction(
            3 * torch.randn(shape, generator=torch.Generator().manual_seed(k)),
            f"skin={v}",
            {"unet": fingerprint(pipe.unet)},
        )
        files[f"skin={v}"] = d.save(lib / f"skin-{v}.safetensors").name
    (lib / "library.json").write_text(
        json.dumps({"directions": files, "strength": 0.5, "recipes": {"glasses=true": [["glasses=true", 1.0]]}})
    )
    argv = [
        "--attribute",
        "skin",
        "--library",
        str(lib),
        "--model",
        str(folder),
        "--seeds",
        "2",
        "--steps",
        "2",
        "--strengths",
        "0.5",
        "--figure",
        str(tmp_path / "cal.png"),
    ]
    summary = main(argv)
    index = json.loads((lib / "library.json").read_text())
    assert index["calibration"]["skin"]["command"] == "python -m segakit.train.calibrate_directions " + " ".join(argv)
    assert sum(sum(c.values()) for c in summary["reads"].values()) == 2 * 3  # 2 singles + 1 pair, 2 seeds each
    assert set(index["draws"]["skin"]) == {"light", "dark"} and sum(index["draws"]["skin"].values()) == pytest.approx(
        1, abs=1e-3
    )
    assert "glasses=true" in index["recipes"]  # another attribute's recipes stay
    from PIL import Image

    with Image.open(tmp_path / "cal.png") as im:  # two rows (own, calibrated) per value, one column per seed shown
        assert im.height >= 4 * 2 * 32 and im.width >= 2 * 2 * 32
    assert all(n.startswith("skin=") for r in summary["chosen"].values() for n, _ in r["recipe"])
    with pytest.raises(UserError, match="--attribute 'hat'"):
        main(["--attribute", "hat", "--library", str(lib), "--model", str(folder)])
    with pytest.raises(UserError, match="--strengths"):
        main(["--strengths", "0,x", "--library", str(lib)])
