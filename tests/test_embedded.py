"""The shipped embedded model: stock diffusers and segakit load it, shapes, determinism, size, the CLI default."""

import json

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline
from typer.testing import CliRunner

from segakit import Edit, SegaPipeline
from segakit.cli.app import app
from segakit.core.loading import embedded_path, vae_folder
from segakit.train.embedded import folder_mb

EMBEDDED = embedded_path()
pytestmark = pytest.mark.skipif(
    not (EMBEDDED / "model_index.json").is_file(),
    reason="the embedded model is not assembled into src/segakit/assets/embedded",
)


def test_layout_size_and_formats():
    assert folder_mb(EMBEDDED) <= 60
    index = json.loads((EMBEDDED / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    weights = [p for p in EMBEDDED.rglob("*") if p.suffix in (".bin", ".ckpt", ".pt", ".pth", ".pkl")]
    assert weights == []  # safetensors only
    for part in ("unet", "vae", "text_encoder"):
        assert list((EMBEDDED / part).glob("*.safetensors"))
    assert vae_folder("embedded") == EMBEDDED / "vae"


def test_stock_diffusers_and_segakit_agree():
    stock = StableDiffusionPipeline.from_pretrained(EMBEDDED)
    assert isinstance(stock.scheduler, DDIMScheduler)
    ours = SegaPipeline.from_pretrained("embedded")
    for p in (stock, ours):
        p.set_progress_bar_config(disable=True)
    kw = dict(num_inference_steps=4, output_type="np")
    a = stock("a smiling woman with glasses", generator=torch.Generator().manual_seed(3), **kw).images
    b = ours("a smiling woman with glasses", generator=torch.Generator().manual_seed(3), **kw).images
    assert a.shape == (1, 64, 64, 3)
    assert np.abs(a - b).max() <= 1e-4


def test_deterministic_for_a_seed_and_edits_change_the_image():
    pipe = SegaPipeline.from_pretrained("embedded")
    pipe.set_progress_bar_config(disable=True)

    def run(edits, seed=5):
        return pipe("a face of a person", num_inference_steps=6, num_images_per_prompt=2, output_type="np",
                    generator=[torch.Generator().manual_seed(seed + i) for i in range(2)], edits=edits).images  # fmt: skip

    first, again = run([]), run([])
    assert first.shape == (2, 64, 64, 3)
    assert np.array_equal(first, again)
    assert np.abs(first[0] - first[1]).max() > 0.05  # two seeds, two faces
    edited = run([Edit("glasses", scale=7.0, warmup=1)])
    assert np.abs(edited - first).mean() > 1e-3


def test_generate_uses_the_embedded_model_by_default(tmp_path):
    out = tmp_path / "face.png"
    result = CliRunner().invoke(app, ["generate", "a bald man", "--steps", "3", "--seed", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file()


def test_edits_get_the_embedded_models_defaults(tmp_path):
    from segakit.core.images import read_params
    from segakit.sega.defaults import EMBEDDED_EDIT, edit_defaults
    from segakit.sega.guidance import DIFFUSERS_EDIT

    assert edit_defaults("embedded") == EMBEDDED_EDIT and edit_defaults(str(tmp_path)) == DIFFUSERS_EDIT
    out = tmp_path / "face.png"
    result = CliRunner().invoke(
        app,
        [
            "generate",
            "a face of a person",
            "--edit",
            "+glasses",
            "--edit",
            "-beard:s=3",
            "--steps",
            "6",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    glasses, beard = read_params(out)["edits"]
    assert (glasses["scale"], glasses["threshold"], glasses["warmup"]) == (
        EMBEDDED_EDIT.scale,
        EMBEDDED_EDIT.threshold,
        EMBEDDED_EDIT.warmup,
    )
    assert beard["scale"] == 3 and beard["warmup"] == EMBEDDED_EDIT.warmup and beard["reverse"]


def test_an_edit_means_the_same_in_python_and_on_the_command_line(tmp_path):
    """Edit("glasses") and --edit +glasses: same parameters, same pixels, on the embedded model; the deprecated
    argument names keep diffusers' defaults there."""
    import numpy as np
    import torch
    from PIL import Image

    from segakit import SegaPipeline
    from segakit.core.images import read_params
    from segakit.core.loading import embedded_path
    from segakit.sega.defaults import EMBEDDED_EDIT
    from segakit.sega.guidance import DIFFUSERS_EDIT

    out = tmp_path / "cli.png"
    result = CliRunner().invoke(
        app,
        [
            "generate",
            "a face of a person",
            "--edit",
            "+glasses",
            "--edit",
            "-beard:s=3",
            "--steps",
            "6",
            "--seed",
            "1",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    stored = read_params(out)
    assert stored["edit_defaults"] == {
        "scale": EMBEDDED_EDIT.scale,
        "threshold": EMBEDDED_EDIT.threshold,
        "warmup": EMBEDDED_EDIT.warmup,
    }

    for name in ("embedded", str(embedded_path())):  # the folder written out is the same model
        pipe = SegaPipeline.from_pretrained(name)
        pipe.set_progress_bar_config(disable=True)
        got = pipe(
            "a face of a person",
            edits=[Edit("glasses"), Edit("beard", scale=3, reverse=True)],
            num_inference_steps=6,
            generator=[torch.Generator().manual_seed(1)],
        )
        assert [e.__dict__ for e in got.edits] == stored["edits"]
        pixels = np.asarray(got.images[0].convert("RGB"), dtype=np.int16)
        assert np.abs(pixels - np.asarray(Image.open(out).convert("RGB"), dtype=np.int16)).max() <= 1

    old_style = pipe("a face of a person", editing_prompt="glasses", num_inference_steps=2, output_type="latent")
    assert old_style.edits == [
        Edit("glasses", scale=DIFFUSERS_EDIT.scale, threshold=DIFFUSERS_EDIT.threshold, warmup=DIFFUSERS_EDIT.warmup)
    ]
