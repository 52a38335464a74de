"""The direction library and its three uses: fair, safe and text-enhancing generation (issue 16)."""

import json

import numpy as np
import pytest
import torch
from cli_runner import cli, sd_folder
from PIL import Image

from segakit import SegaPipeline
from segakit.core.errors import UserError
from segakit.core.fingerprint import fingerprint
from segakit.core.hooks import mid_block_shape
from segakit.core.images import read_params
from segakit.directions import Direction
from segakit.directions.library import Library, parse_shares

NAMES = ["presentation=man", "presentation=woman", "horror=false", "glasses=true", "skin=dark"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("model")
    ours = SegaPipeline.from_pretrained(sd_folder(tmp))
    ours.set_progress_bar_config(disable=True)
    shape = mid_block_shape(ours.unet, 32, 32, ours.vae_scale_factor)
    lib = tmp / "lib"
    lib.mkdir()
    files = {}
    for k, name in enumerate(NAMES):
        d = Direction(
            3 * torch.randn(shape, generator=torch.Generator().manual_seed(k)), name, {"unet": fingerprint(ours.unet)}
        )
        files[name] = d.save(lib / f"{name.replace('=', '-')}.safetensors").name
    (lib / "library.json").write_text(json.dumps({"directions": files}))
    return tmp / "sd", ours, lib


def test_library_lists_values_and_enhances_what_the_prompt_names(model):
    lib = Library.load(model[2])
    assert lib.values("presentation") == ["man", "woman"] and lib.fair_attributes() == ["presentation"]
    assert sorted(lib.enhance("a smiling woman with glasses")) == ["glasses=true", "presentation=woman"]
    assert lib.enhance("a face of a person") == []
    with pytest.raises(UserError, match="no 'hat=true'"):
        lib.direction("hat=true")
    with pytest.raises(UserError, match="fairness needs two or more"):
        lib.fair("skin", 4, 0)


def test_fair_draws_are_per_image_seeded_and_follow_the_shares(model):
    lib = Library.load(model[2])
    a, b = lib.fair("presentation", 200, 0), lib.fair("presentation", 200, 0)
    assert a.choices == b.choices and 0.4 < a.choices.count("woman") / 200 < 0.6
    assert lib.fair("presentation", 1, 7).choices == [a.choices[7]]  # image i depends on seed + i alone
    assert set(lib.fair("presentation", 50, 0, "woman:1,man:0").choices) == {"woman"}
    rows = lib.fair("presentation", 2, 0, {"man": 0.5, "woman": 0.5}).offset(
        2, lib.direction("presentation=man").shape, "cpu", torch.float32
    )
    assert rows.shape[0] == 2


def test_per_direction_strengths_override_the_library_default(model, tmp_path):
    import shutil

    lib_dir = tmp_path / "lib"
    shutil.copytree(model[2], lib_dir)
    index = json.loads((lib_dir / "library.json").read_text())
    index.update({"strength": 0.5, "strengths": {"horror=false": 2.0, "presentation=woman": 1.5}})
    (lib_dir / "library.json").write_text(json.dumps(index))
    lib = Library.load(lib_dir)
    assert lib.strength_of("horror=false") == 2.0 and lib.strength_of("glasses=true") == 0.5
    assert lib.safe().strength == 2.0 and lib.safe(0.25).strength == 0.25
    shape = lib.direction("presentation=man").shape
    fair = lib.fair("presentation", 2, 0, "man:0.5,woman:0.5")
    rows = fair.offset(2, shape, "cpu", torch.float32)
    for row, value in zip(rows, fair.choices):
        factor = {"man": 0.5, "woman": 1.5}[value]
        assert torch.allclose(row, factor * lib.direction(f"presentation={value}").vector)
    same = lib.fair("presentation", 2, 0, "man:0.5,woman:0.5", strength=1.0).offset(2, shape, "cpu", torch.float32)
    for row, value in zip(same, fair.choices):  # an explicit strength applies to every value
        assert torch.allclose(row, lib.direction(f"presentation={value}").vector)


@pytest.mark.parametrize("text, message", [("woman:0.7,man:0.7", "sum to 1"), ("nonbinary:1", "VALUE one of man, woman"),
                                           ("woman:lots", "not a number"), ("woman:-1,man:2", "0 or more")])  # fmt: skip
def test_bad_shares(text, message):
    with pytest.raises(UserError, match=message):
        parse_shares("presentation", text, ["man", "woman"])


def test_generate_fair_records_the_draw_and_regenerates_it(model, monkeypatch, capsys, tmp_path):
    folder, _, lib = model
    code, _, err = cli(monkeypatch, capsys, "generate", "a doctor", "--model", folder, "--steps", "2", "-n", "4", "--fair", "presentation",
                       "--library", lib, "--safe", "--enhance", "--out", tmp_path / "fair")  # fmt: skip
    assert code == 0, err
    choices = [read_params(tmp_path / "fair" / f"image-{i:03d}.png")["fair_choice"] for i in range(4)]
    assert sorted(choices) == ["man", "man", "woman", "woman"]  # the spread draw: seeds 0-3 split evenly
    assert read_params(tmp_path / "fair" / "image-000.png")["fair_draw"] == "spread"
    code, _, err = cli(
        monkeypatch,
        capsys,
        "generate",
        "--from-png",
        tmp_path / "fair" / "image-002.png",
        "--out",
        tmp_path / "again.png",
    )
    assert code == 0, err
    assert read_params(tmp_path / "again.png")["fair_choice"] == choices[2]
    same = [np.asarray(Image.open(p)) for p in (tmp_path / "fair" / "image-002.png", tmp_path / "again.png")]
    assert np.abs(same[0].astype(int) - same[1].astype(int)).max() <= 1


@pytest.mark.parametrize("extra, message", [(["--fair", "hat"], "fairness needs two or more"),
                                            (["--fair", "presentation=woman:2"], "sum to 1"),
                                            (["--fair", "=x"], "names no attribute"),
                                            (["--fair", "presentation", "--fair-draw", "even"], "--fair-draw 'even' is not one of spread, random")])  # fmt: skip
def test_bad_fair_is_one_sentence(model, monkeypatch, capsys, tmp_path, extra, message):
    folder, _, lib = model
    code, _, err = cli(monkeypatch, capsys, "generate", "a doctor", "--model", folder, "--steps", "2", "--library", lib, *extra,
                       "--out", tmp_path / "o")  # fmt: skip
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_library_needed_for_another_model(model, monkeypatch, capsys, tmp_path):
    code, _, err = cli(
        monkeypatch, capsys, "generate", "a doctor", "--model", model[0], "--safe", "--out", tmp_path / "o"
    )
    assert code == 2 and "--library DIR" in err


def test_shipped_library_belongs_to_the_shipped_model():
    """The embedded model's library was learned on the shipped U-Net: when the model is retrained, this fails
    until `python -m segakit.train.directions` relearns it."""
    from segakit.core.loading import embedded_path
    from segakit.directions.library import embedded_library_path

    lib = Library.load()
    assert lib.folder == embedded_library_path()
    assert lib.fair_attributes() == ["expression", "presentation", "skin"] and "horror=false" in lib.names()
    assert {"glasses=true", "hat=true", "bangs=true", "expression=smile"} <= set(lib.names())  # enhance directions
    assert lib.meta["unet"] == fingerprint(SegaPipeline.from_pretrained(embedded_path()).unet)


def test_recipe_strengths_parse_and_refuse_unknown_names():
    from segakit.train.directions import parse_strengths

    assert parse_strengths("presentation=man:0.75, presentation=woman:1") == {
        "presentation=man": 0.75,
        "presentation=woman": 1.0,
    }
    assert parse_strengths("") == {}
    with pytest.raises(UserError, match="NAME:STRENGTH"):
        parse_strengths("presentation=man:lots")
    with pytest.raises(UserError, match="not one of the recipe's directions"):
        parse_strengths("wings=true:1")


def test_recipe_rewrites_the_strengths_of_a_finished_library(tmp_path, capsys):
    import shutil

    from segakit.directions.library import embedded_library_path
    from segakit.train.directions import main

    lib = shutil.copytree(embedded_library_path(), tmp_path / "lib")
    main(["--out", str(lib), "--only", "presentation", "--strengths", "presentation=woman:0.6", "--threads", "1"])
    assert "presentation=woman: done already" in capsys.readouterr().out  # nothing relearned
    meta = json.loads((lib / "library.json").read_text())
    assert (
        meta["strengths"] == {"presentation=woman": 0.6} and Library.load(lib).strength_of("presentation=woman") == 0.6
    )
    assert set(meta["directions"]) == set(Library.load().names())  # the rest of the library kept


def test_pngs_written_before_the_spread_draw_repeat_the_random_draw():
    from segakit.jobs.generate import GenerationParams

    old = GenerationParams.from_json({"prompt": "a doctor", "fair": "presentation", "seed": 3})
    assert old.fair_draw == "random"
    assert (
        GenerationParams.from_json({"prompt": "a doctor", "fair": "presentation", "fair_draw": "spread"}).fair_draw
        == "spread"
    )
    assert GenerationParams.from_json({"prompt": "a doctor"}).fair_draw == "spread"  # no fairness: nothing to repeat


def test_shipped_flow_library_belongs_to_the_shipped_flow_model(tmp_path, monkeypatch, capsys):
    """The embedded flow model ships its own library (its transformer's directions, at the strengths measured on it);
    each embedded model finds its own by name, other models have none and are told to pass --library."""
    from segakit.directions.library import default_library_path, embedded_flow_library_path, embedded_library_path

    assert default_library_path("embedded") == embedded_library_path()
    assert default_library_path("embedded-flow") == embedded_flow_library_path() != embedded_library_path()
    assert default_library_path(tmp_path) is None and default_library_path(None) is None
    lib = Library.load(default_library_path("embedded-flow"))
    assert lib.fair_attributes() == ["presentation", "skin"] and "horror=false" in lib.names()
    assert lib.strength == 0.2 and lib.strength_of("presentation=woman") == 0.3
    pipe = SegaPipeline.from_pretrained("embedded-flow")
    assert lib.meta["unet"] == fingerprint(pipe.family.denoiser)
    lib.check_model(pipe.family.denoiser)
    with pytest.raises(UserError, match="--out is needed for model"):
        from segakit.train.directions import main

        main(["--model", str(tmp_path)])


def test_embedded_flow_generates_fair_with_its_own_library(monkeypatch, capsys, tmp_path):
    """`--model embedded-flow --fair presentation` needs no --library: the flow model's shipped one is taken (the
    U-Net model's would be refused on the transformer), and the PNG records the value drawn for each image."""
    from segakit.core.images import read_params

    code, out, err = cli(monkeypatch, capsys, "generate", "a doctor", "--model", "embedded-flow", "--steps", "2", "-n", "2",
                         "--fair", "presentation", "--out", tmp_path / "o")  # fmt: skip
    assert code == 0, err
    pngs = sorted((tmp_path / "o").glob("*.png"))
    assert len(pngs) == 2 and all(read_params(p)["fair"] for p in pngs)
