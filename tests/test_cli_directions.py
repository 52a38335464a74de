"""`segakit directions learn/show` and `segakit generate --direction` end to end on a small diffusers folder,
and a learned direction on the embedded model that moves the oracle's reading (issue 16)."""

import sys

import pytest
import torch
from cli_runner import cli, sd_folder

from segakit.cli import main
from segakit.core.images import read_params


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return sd_folder(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def learned(model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("learned")
    mp = pytest.MonkeyPatch()
    mp.setattr(sys, "argv", ["segakit", "directions", "learn", "glasses", "--positive", "a face with glasses", "--neutral",
                             "a face", "--images", "3", "--steps", "3", "--gen-steps", "2", "--model", str(model_dir),
                             "--cache", str(tmp / "cache"), "--out", str(tmp / "glasses.safetensors"), "--device", "cpu"])  # fmt: skip
    try:
        main()
    except SystemExit as exc:
        assert not exc.code
    finally:
        mp.undo()
    return tmp / "glasses.safetensors"


def test_learn_writes_a_direction_that_show_and_generate_use(learned, model_dir, monkeypatch, capsys, tmp_path):
    assert learned.is_file()
    code, out, _ = cli(monkeypatch, capsys, "directions", "show", learned, "--json")
    assert code == 0 and '"name": "glasses"' in out and '"shape"' in out
    code, out, err = cli(monkeypatch, capsys, "generate", "a face", "--model", model_dir, "--steps", "2",
                         "--direction", f"{learned}:1.5", "--out", tmp_path / "a.png")  # fmt: skip
    assert code == 0, err
    assert read_params(tmp_path / "a.png")["directions"] == [f"{learned}:1.5"]
    code, _, err = cli(monkeypatch, capsys, "generate", "--from-png", tmp_path / "a.png", "--out", tmp_path / "b.png")
    assert code == 0, err


@pytest.mark.parametrize("args, message", [
    (["directions", "learn", "x", "--positive", "p", "--out", "x.pt"], "does not end in .safetensors"),
    (["directions", "learn", "x", "--positive", "p", "--images", "0", "--out", "x.safetensors"], "--images 0"),
    (["directions", "show", "missing.safetensors"], "does not exist"),
    (["generate", "a face", "--direction", "missing.safetensors"], "does not exist"),
    (["generate", "a face", "--direction", "a.safetensors:lots"], "must be a number"),
])  # fmt: skip
def test_bad_input_is_one_sentence_and_exit_2(args, message, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(monkeypatch, capsys, *args, *(["--out", tmp_path / "o"] if args[0] == "generate" else []))
    assert code == 2 and message in err and "Traceback" not in err
    assert (
        not list(tmp_path.glob("*.safetensors"))
        and not (tmp_path / "o").exists()
        or not list((tmp_path / "o").iterdir())
    )


def test_direction_from_another_model_is_refused(learned, monkeypatch, capsys, tmp_path):
    code, _, err = cli(
        monkeypatch, capsys, "generate", "a face", "--steps", "2", "--direction", learned, "--out", tmp_path / "o"
    )
    assert code == 2 and "learned on U-Net weights" in err


def test_learned_direction_moves_the_oracle_on_the_embedded_model(tmp_path):
    """A short seeded run: 16 images of "a face of a bald person", 100 steps; then 16 fresh seeds of the neutral
    prompt at strength 0.5. The faces must stay faces: attributes that baldness does not touch mostly keep
    their reading (at strength 1 and more, a direction learned this way breaks the image; docs/directions.md)."""
    from segakit import SegaPipeline
    from segakit.directions import LearnConfig, learn_direction
    from segakit.world.oracle import Oracle

    pipe = SegaPipeline.from_pretrained("embedded")
    d = learn_direction(pipe, LearnConfig("bald", positive="a face of a bald person", images=16, steps=100), tmp_path)
    oracle = Oracle.load()

    def labels(directions):
        gens = [torch.Generator().manual_seed(9000 + i) for i in range(16)]
        images = pipe("a face of a person", num_inference_steps=25, num_images_per_prompt=16, generator=gens,
                      directions=directions, output_type="pt").images  # fmt: skip
        return oracle.predict(images)

    plain, steered = labels([]), labels([d.at(0.5)])
    bald = [sum(lab["hair_style"] == "bald" for lab in x) / 16 for x in (plain, steered)]
    kept = [a for a in ("presentation", "skin", "glasses", "beard", "makeup", "horror")]
    unchanged = sum(p[a] == s[a] for p, s in zip(plain, steered) for a in kept) / (16 * len(kept))
    assert d.meta["final_loss"] < d.meta["first_loss"]
    assert bald[0] <= 0.25 and bald[1] >= bald[0] + 0.5, bald
    assert unchanged >= 0.6, unchanged
