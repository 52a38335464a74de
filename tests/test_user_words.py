"""Errors in the user's words, honest results, a quiet library, progress and the one device rule.

One message source, three spellings (segakit.core.errors): the same refusal names ``--num-images`` on the
command line, ``num_images`` in the HTTP API and in Python; misspelt names get the closest; a hub id that cannot
load offline says what to pass instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runner import cli
from PIL import Image

from segakit.core.errors import UserError, arg, closest, render, spelling
from segakit.jobs.generate import GenerationParams


def test_one_message_three_spellings():
    err = UserError(f"{arg('num_images')} 0 is below 1; {arg('guidance_scale')} and {arg('fair_method')} too.")
    assert render(str(UserError("x")), "cli") == "x"
    with spelling("cli"):
        assert str(err) == "--num-images 0 is below 1; --guidance and --method too."
    with spelling("json"):
        assert str(err) == "num_images 0 is below 1; guidance and fair_method too."
    assert str(err) == "num_images 0 is below 1; guidance_scale and fair_method too."  # Python: the argument's name


def test_the_same_refusal_in_python_and_on_the_command_line(monkeypatch, capsys):
    with pytest.raises(UserError) as err:
        GenerationParams(prompt="a face", num_images=0).validate()
    assert str(err.value).startswith("num_images 0 is below 1")
    code, _, out = cli(monkeypatch, capsys, "generate", "a face", "-n", "0")
    assert code == 2 and out.startswith("error: --num-images 0 is below 1") and out.count("\n") == 1


def test_closest_names_are_suggested(monkeypatch, capsys):
    assert closest("hairstyle", ["hair_style", "hair_color", "hat"]).startswith(" (the closest: 'hair_style'")
    assert closest("zzz", ["hat"]) == ""
    code, _, err = cli(
        monkeypatch, capsys, "generate", "a face", "--fair", "hairstyle", "--steps", "1", "--out", "/tmp/never.png"
    )
    assert code == 2 and "'hair_style'" in err and "0 of its values" not in err
    code, _, err = cli(
        monkeypatch, capsys, "world", "sample", "-n", "1", "--out", "/tmp/never-ws", "--set", "hairstyle=long"
    )
    assert code == 2 and "(the closest: 'hair_style')" in err and err.rstrip().endswith(".")


def test_a_hub_id_offline_says_what_to_pass(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    code, _, err = cli(monkeypatch, capsys, "generate", "a face", "--model", "runwayml/stable-diffusion-v1-5", "--steps", "1",
                       "--out", tmp_path / "x.png")  # fmt: skip
    assert code == 2 and err.count("\n") == 1, err
    assert "--model FOLDER" in err and "HF_HUB_OFFLINE" in err and "stacktrace" not in err and "stack trace" not in err


def test_unparseable_captions_name_the_flags(monkeypatch):
    from segakit.editing.caption_writer import CaptionWriter

    writer = object.__new__(CaptionWriter)
    writer.temperature = 1.0
    monkeypatch.setattr(
        writer, "generate", lambda prompt, seed, temperature=None: prompt + " nonsense without captions"
    )
    with pytest.raises(UserError) as err, spelling("cli"):
        writer.write("give her glasses", "a face", 2)
    with spelling("cli"):
        assert "--captions-after" in str(err.value) and "--captions-before" in str(err.value)


def test_quiet_library_prints_nothing(tmp_path):
    code = ("from segakit import SegaPipeline, Edit\n"
            "pipe = SegaPipeline.from_pretrained('embedded')\n"
            "pipe('a face of a person', num_inference_steps=2, edits=[Edit('glasses')])\n"
            "from PIL import Image\n"
            "from segakit.editing import EditPipeline\n"
            "EditPipeline.from_pretrained('embedded')(Image.new('RGB', (64, 64), (200, 180, 160)),\n"
            "    instruction='give her glasses', num_inference_steps=2, seed=0)\n")  # fmt: skip
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(Path(__file__).parents[1] / "src"),
    }
    env.pop("SEGAKIT_VERBOSE", None)
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "" and run.stderr == "", (run.stdout, run.stderr)


def test_a_concept_that_never_acted_is_said_and_recorded(monkeypatch, capsys, tmp_path):
    from segakit.core.images import read_params

    code, _, err = cli(monkeypatch, capsys, "generate", "a face of a person", "--edit", "+glasses:s=0", "--steps", "7",
                       "--out", tmp_path / "x.png", "--threads", "1")  # fmt: skip
    assert code == 0 and err.count("warning: concept '+glasses' never acted") == 1 and "larger scale" in err
    assert read_params(tmp_path / "x.png")["warnings"][0].startswith("concept '+glasses' never acted")
    code, _, err = cli(monkeypatch, capsys, "generate", "a face of a person", "--edit", "+glasses:s=6", "--steps", "7",
                       "--out", tmp_path / "y.png", "--threads", "1")  # fmt: skip
    assert code == 0 and "never acted" not in err and "warnings" not in read_params(tmp_path / "y.png")
    # the PNG with the warning regenerates from its parameters
    assert cli(monkeypatch, capsys, "generate", "--from-png", tmp_path / "x.png", "--out", tmp_path / "z.png")[0] == 0


def test_an_edit_that_changed_nothing_names_what_to_try():
    from segakit.editing.honest import image_change, unchanged_warning

    face = Image.new("RGB", (64, 64), (200, 180, 160))
    same = face.copy()
    same.putpixel((3, 3), (0, 0, 0))
    hat = face.copy()
    hat.paste((90, 20, 120), (10, 0, 54, 14))
    assert image_change(face, same).share == pytest.approx(1 / 4096)
    with spelling("cli"):
        sentence = unchanged_warning(image_change(face, same), "sega")
    assert (
        sentence.startswith("the edit changed almost nothing")
        and "--threshold" in sentence
        and "--method onthefly" in sentence
    )
    with spelling("json"):
        assert "threshold" in unchanged_warning(image_change(face, same), "sega") and "--" not in unchanged_warning(
            image_change(face, same), "onthefly"
        )
    assert unchanged_warning(image_change(face, hat), "onthefly") is None


def test_edit_defaults_follow_the_recipe_and_a_given_flag_wins():
    from segakit.cli.edit import _recipe_defaults

    # inversion, mask, guidance, threshold, sega_mask, blend
    assert _recipe_defaults("onthefly", "measured", None, None, None, None, None, None) == (
        "ddpm",
        0.98,
        5.0,
        0.9,
        "intersect",
        False,
    )
    assert _recipe_defaults("onthefly", "paper", None, None, None, None, None, None)[:3] == ("ddim", 0.0, 5.0)
    assert _recipe_defaults("onthefly", "measured", "ddim", None, None, None, None, None)[:3] == ("ddim", 0.0, 5.0)
    assert _recipe_defaults("onthefly", "measured", None, 0.9, 7.0, None, None, None)[:3] == ("ddpm", 0.9, 7.0)
    assert _recipe_defaults("sega", "measured", None, None, None, None, None, None)[3:] == (0.99, "noise", True)
    assert _recipe_defaults("sega", "paper", None, None, None, None, None, None)[3:] == (0.9, "intersect", False)
    assert _recipe_defaults("sega", "measured", None, None, None, 0.95, None, False)[3:] == (0.95, "noise", False)
    with pytest.raises(UserError):
        _recipe_defaults("onthefly", "best", None, None, None, None, None, None)


def test_the_editing_chain_names_its_stages():
    from segakit.cli.edit import stage_of
    from segakit.editing.params import EditParams

    ddim = EditParams("x", inversion="ddim", steps=10)
    assert [stage_of(ddim, k) for k in (0, 9, 10, 20, 30)] == [
        "inverting",
        "inverting",
        "reconstructing",
        "editing",
        "editing",
    ]
    assert [stage_of(EditParams("x", method="sega", steps=4), k) for k in (1, 5)] == ["inverting", "editing"]


def test_long_commands_take_quiet_and_every_device_defaults_to_the_one_rule():
    from test_output_policy import command_tree

    quick = {
        "world schema",
        "world captions",
        "world sheet",
        "directions show",
        "directions list",
        "serve",
    }  # seconds at most, or a server
    for path, command in command_tree():
        names = {p.name: p for p in command.params}
        if path not in quick:
            assert "quiet" in names, f"segakit {path} can run long but takes no --quiet"
        if "device" in names:
            assert names["device"].default is None, (
                f"segakit {path} --device defaults to {names['device'].default!r}, not the rule"
            )


def test_directions_list(monkeypatch, capsys):
    code, out, _ = cli(monkeypatch, capsys, "directions", "list", "--json")
    data = json.loads(out)
    assert (
        code == 0 and "presentation=woman" in [d["name"] for d in data["directions"]] and "presentation" in data["fair"]
    )
    code, out, _ = cli(monkeypatch, capsys, "directions", "list")
    assert code == 0 and "presentation=woman" in out and "--fair can balance" in out
