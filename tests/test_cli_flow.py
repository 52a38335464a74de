"""`segakit generate --model FOLDER` on SD3 and FLUX folders: the family's defaults, edits, recorded guidance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cli_runner import cli
from diffusers import FluxPipeline, StableDiffusion3Pipeline
from PIL import Image
from tiny_flow_models import flux_components, sd3_components

from segakit.core.images import read_params


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("flow-folders")
    StableDiffusion3Pipeline(**sd3_components(tmp / "parts-sd3")).save_pretrained(tmp / "sd3", safe_serialization=True)
    FluxPipeline(**flux_components(tmp / "parts-flux")).save_pretrained(tmp / "flux", safe_serialization=True)
    return tmp


@pytest.mark.parametrize("family,cls,size", [("sd3", StableDiffusion3Pipeline, 32), ("flux", FluxPipeline, 32)])
def test_generate_writes_diffusers_default_image(monkeypatch, capsys, folders, tmp_path, family, cls, size):
    """Given only the prompt, steps, size and seed, the image is diffusers' own at the family's defaults."""
    out = tmp_path / "img.png"
    code, _, err = cli(monkeypatch, capsys, "generate", "a face", "--model", folders / family, "--steps", 3,
                       "--height", size, "--width", size, "--seed", 4, "--out", out)  # fmt: skip
    assert code == 0, err
    load = {"text_encoder_3": None, "tokenizer_3": None} if family == "sd3" else {}
    reference = cls.from_pretrained(folders / family, local_files_only=True, **load)
    want = reference(
        "a face", num_inference_steps=3, height=size, width=size, generator=torch.Generator().manual_seed(4)
    ).images[0]
    got = np.asarray(Image.open(out), dtype=np.int16)
    assert np.abs(got - np.asarray(want, dtype=np.int16)).max() <= 1
    params = read_params(out)
    assert params["guidance"] is None or params["guidance"] == {"sd3": 7.0, "flux": 3.5}[family]


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_edit_changes_the_image_and_guidance_round_trips(monkeypatch, capsys, folders, tmp_path, family):
    base = ["generate", "a face", "--model", folders / family, "--steps", 3, "--height", 32, "--width", 32, "--seed", 2]
    assert cli(monkeypatch, capsys, *base, "--out", tmp_path / "plain.png")[0] == 0
    code, _, err = cli(monkeypatch, capsys, *base, "--edit", "+beard:s=6,t=0.5,w=0", "--save-guidance", tmp_path / "g.safetensors",
                       "--out", tmp_path / "edit.png")  # fmt: skip
    assert code == 0, err
    plain, edit = (np.asarray(Image.open(tmp_path / n), dtype=np.int16) for n in ("plain.png", "edit.png"))
    assert np.abs(plain - edit).max() > 0
    # the recorded guidance, applied without the edit, gives the edited image again
    code, _, err = cli(
        monkeypatch, capsys, *base, "--apply-guidance", tmp_path / "g.safetensors", "--out", tmp_path / "again.png"
    )
    assert code == 0, err
    again = np.asarray(Image.open(tmp_path / "again.png"), dtype=np.int16)
    assert np.abs(again - edit).max() <= 1


def test_directions_learn_and_apply_on_sd3(monkeypatch, capsys, folders, tmp_path):
    direction = tmp_path / "glasses.safetensors"
    code, _, err = cli(monkeypatch, capsys, "directions", "learn", "glasses", "--positive", "a face with glasses", "--neutral", "a face",
                       "--model", folders / "sd3", "-n", 2, "--steps", 2, "--batch", 2, "--gen-steps", 2,
                       "--cache", tmp_path / "cache", "--out", direction)  # fmt: skip
    assert code == 0, err
    base = ["generate", "a face", "--model", folders / "sd3", "--steps", 2, "--height", 32, "--width", 32, "--seed", 1]
    code, _, err = cli(monkeypatch, capsys, *base, "--direction", f"{direction}:40", "--out", tmp_path / "d.png")
    assert code == 0, err
    assert cli(monkeypatch, capsys, *base, "--out", tmp_path / "plain.png")[0] == 0
    a, b = (np.asarray(Image.open(tmp_path / n), dtype=np.int16) for n in ("d.png", "plain.png"))
    assert np.abs(a - b).max() > 0
    # the same file on the FLUX model is refused in one sentence, exit 2
    code, _, err = cli(monkeypatch, capsys, "generate", "a face", "--model", folders / "flux", "--steps", 2, "--height", 32,
                       "--width", 32, "--direction", str(direction), "--out", tmp_path / "f.png")  # fmt: skip
    assert code == 2 and "Traceback" not in err and "learned on" in err
