"""`segakit generate` end to end on a small diffusers folder: PNG metadata, --from-png, --sweep,
guidance files, and bad input (one sentence, exit code 2, no traceback, no partial file)."""

import subprocess
import sys

import numpy as np
import pytest
from cli_runner import cli, sd_folder
from PIL import Image
from tiny_models import make_embedding, make_lora, sd_components

from segakit.core.images import read_params


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return sd_folder(tmp_path_factory.mktemp("model"))


def _pixels(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_generate_writes_pngs_with_parameters_and_regenerates(monkeypatch, capsys, model_dir, tmp_path):
    code, out, err = cli(
        monkeypatch,
        capsys,
        "generate",
        "a face",
        "--model",
        model_dir,
        "--edit",
        "+glasses:s=6,w=1",
        "--edit",
        "-beard:t=0.95",
        "--steps",
        4,
        "--num-images",
        2,
        "--seed",
        7,
        "--out",
        tmp_path / "run",
    )
    assert code == 0, err
    files = sorted((tmp_path / "run").glob("*.png"))
    assert len(files) == 2
    params = read_params(files[1])
    assert params["seed"] == 8 and params["prompt"] == "a face" and params["steps"] == 4
    assert [e["prompt"] for e in params["edits"]] == ["glasses", "beard"] and params["edits"][1]["reverse"]
    code, _, err = cli(monkeypatch, capsys, "generate", "--from-png", files[1], "--out", tmp_path / "again.png")
    assert code == 0, err
    # image 1 of a batch of 2, regenerated alone: same pixels (batch size may flip a rounding)
    assert np.abs(_pixels(files[1]) - _pixels(tmp_path / "again.png")).max() <= 1


def test_sweep_writes_one_strip(monkeypatch, capsys, model_dir, tmp_path):
    code, _, err = cli(
        monkeypatch,
        capsys,
        "generate",
        "a face",
        "--model",
        model_dir,
        "--edit",
        "+glasses:w=1",
        "--sweep",
        "0,5,10",
        "--steps",
        3,
        "--out",
        tmp_path / "strip.png",
    )
    assert code == 0, err
    strip = Image.open(tmp_path / "strip.png")
    assert strip.size[0] >= 3 * 32 and read_params(tmp_path / "strip.png")["sweep"] == [0.0, 5.0, 10.0]


def test_recorded_guidance_reapplied(monkeypatch, capsys, model_dir, tmp_path):
    g = tmp_path / "glasses.safetensors"
    code, _, err = cli(
        monkeypatch,
        capsys,
        "generate",
        "a face",
        "--model",
        model_dir,
        "--edit",
        "+glasses:w=1,s=8",
        "--steps",
        4,
        "--out",
        tmp_path / "edited.png",
        "--save-guidance",
        g,
    )
    assert code == 0, err and g.is_file()
    code, _, err = cli(
        monkeypatch,
        capsys,
        "generate",
        "a face",
        "--model",
        model_dir,
        "--apply-guidance",
        g,
        "--steps",
        4,
        "--out",
        tmp_path / "reused.png",
    )
    assert code == 0, err
    assert np.abs(_pixels(tmp_path / "edited.png") - _pixels(tmp_path / "reused.png")).max() <= 1


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("adapters")
    parts = sd_components(tmp / "parts")  # same shapes as the model folder's
    return make_lora(parts, tmp / "style.safetensors"), make_embedding(
        parts["text_encoder"], tmp / "toy.safetensors", "<toy>", 2
    )


def test_lora_and_embedding_are_applied_and_recorded(monkeypatch, capsys, model_dir, adapters, tmp_path):
    lora, embedding = adapters
    base = ["generate", "a <toy> face", "--model", model_dir, "--edit", "+glasses:w=1", "--steps", 3]
    code, _, err = cli(monkeypatch, capsys, *base, "--out", tmp_path / "plain.png")
    assert code == 0, err
    code, _, err = cli(
        monkeypatch, capsys, *base, "--lora", f"{lora}:0.5", "--embedding", embedding, "--out", tmp_path / "styled.png"
    )
    assert code == 0, err
    params = read_params(tmp_path / "styled.png")
    assert params["loras"] == [{"path": str(lora), "scale": 0.5}] and params["embeddings"] == [str(embedding)]
    assert np.abs(_pixels(tmp_path / "plain.png") - _pixels(tmp_path / "styled.png")).max() > 2
    code, _, err = cli(
        monkeypatch, capsys, "generate", "--from-png", tmp_path / "styled.png", "--out", tmp_path / "again.png"
    )
    assert code == 0, err
    assert np.abs(_pixels(tmp_path / "styled.png") - _pixels(tmp_path / "again.png")).max() <= 1


def test_bad_lora_and_embedding_input_exits_2(monkeypatch, capsys, model_dir, adapters, tmp_path):
    lora, _ = adapters
    pickled = tmp_path / "style.ckpt"
    pickled.write_bytes(b"not really")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 16)
    cases = [
        (["--lora", tmp_path / "missing.safetensors"], "does not exist"),
        (["--lora", pickled], "pickle checkpoint"),
        (["--lora", tmp_path / "notes.txt"], "not a .safetensors file"),
        (["--lora", f"{lora}:strong"], "scale 'strong' is not a number"),
        (["--lora", f"{lora}:nan"], "finite number"),
        (["--lora", broken], "not a readable .safetensors file"),
        (["--embedding", tmp_path / "missing.safetensors"], "does not exist"),
        (["--embedding", broken], "not a readable .safetensors file"),
    ]
    for args, needle in cases:
        out_dir = tmp_path / "out"
        code, _, err = cli(
            monkeypatch, capsys, "generate", "a face", "--model", model_dir, "--steps", 2, *args, "--out", out_dir
        )
        assert code == 2, (args, err)
        assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, (args, err)
        assert not out_dir.exists() or not any(out_dir.iterdir())


@pytest.mark.parametrize(
    "args,needle",
    [
        (["", "--steps", "3"], "prompt is empty"),
        (["a face", "--steps", "0"], "--steps 0"),
        (["a face", "--edit", "+glasses:t=1.5"], "threshold 1.5"),
        (["a face", "--edit", "+glasses:q=2"], "unknown key 'q'"),
        (["a face", "--edit", "+glasses:s=big"], "not a number"),
        (["a face", "--edit", "-"], "names no concept"),
        (["a face", "--sweep", "0,5"], "exactly one edit"),
    ],
)
def test_bad_input_exits_2_with_one_sentence(monkeypatch, capsys, model_dir, tmp_path, args, needle):
    out_dir = tmp_path / "out"
    code, _, err = cli(monkeypatch, capsys, "generate", *args, "--model", model_dir, "--out", out_dir)
    assert code == 2
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_unknown_model_and_pickles_are_refused(monkeypatch, capsys, model_dir, tmp_path):
    code, _, err = cli(
        monkeypatch, capsys, "generate", "a face", "--model", tmp_path / "nowhere", "--out", tmp_path / "o"
    )
    assert code == 2 and "neither a local folder" in err
    pickled = tmp_path / "pickled"
    (pickled / "unet").mkdir(parents=True)
    (pickled / "model_index.json").write_text("{}")
    (pickled / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"not really")
    code, _, err = cli(monkeypatch, capsys, "generate", "a face", "--model", pickled, "--out", tmp_path / "o")
    assert code == 2 and "pickle" in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_unwritable_output_is_refused_before_work(monkeypatch, capsys, model_dir, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, _, err = cli(
        monkeypatch, capsys, "generate", "a face", "--model", model_dir, "--steps", 2, "--out", blocker / "x.png"
    )
    assert code == 2 and "a-file" in err and "Traceback" not in err


def test_console_script_exit_code_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "segakit.cli", "generate", "a face", "--steps", "0", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "--steps 0" in proc.stderr


def test_demo_writes_gallery(monkeypatch, capsys, model_dir, tmp_path):
    code, out, err = cli(monkeypatch, capsys, "demo", "--model", model_dir, "--steps", 2, "--out", tmp_path / "demo")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "demo").glob("*.png")) == [
        "edits.png",
        "samples.png",
        "strength-strip.png",
    ]
