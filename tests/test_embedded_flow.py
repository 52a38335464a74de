"""The "embedded-flow" model name: the shipped part (transformer, scheduler) joined with the embedded U-Net model's
text encoder, tokenizer and autoencoder into one stock SD3 folder, built once and reused.

A tiny random transformer stands in for the trained one, so this runs whether or not weights are shipped."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

from segakit import SegaPipeline
from segakit.core import embedded_flow
from segakit.core.errors import UserError
from segakit.core.loading import model_key, resolve


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A shipped part as `python -m segakit.train.flow --ship` writes it, with a one-layer random transformer."""
    torch.manual_seed(0)
    folder = tmp_path / "embedded-flow"
    transformer = SD3Transformer2DModel(
        sample_size=16, patch_size=2, in_channels=4, out_channels=4, num_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=512, caption_projection_dim=32, pooled_projection_dim=512,
        pos_embed_max_size=8,
    )  # fmt: skip
    transformer.to(torch.float16).save_pretrained(folder / "transformer")
    FlowMatchEulerDiscreteScheduler(shift=1.0).save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusion3Pipeline"}))
    (folder / "segakit.json").write_text(json.dumps({"name": "test", "training": {}}))
    monkeypatch.setattr(embedded_flow, "shipped_path", lambda: folder)
    monkeypatch.setenv("SEGAKIT_CACHE", str(tmp_path / "cache"))
    return folder


def test_embedded_flow_builds_one_stock_folder_and_equals_diffusers(shipped, tmp_path):
    pipe = SegaPipeline.from_pretrained("embedded-flow")
    built = embedded_flow.folder()
    assert built.parent == tmp_path / "cache" and (built / "segakit.json").is_file()
    assert sorted(p.name for p in built.iterdir() if p.is_dir()) == [
        "scheduler", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "transformer", "vae",
    ]  # fmt: skip
    assert resolve("embedded-flow") == str(built)  # built once, then reused
    assert model_key("embedded-flow") == model_key(built) == "embedded-flow"
    pipe.set_progress_bar_config(disable=True)
    stock = StableDiffusion3Pipeline.from_pretrained(built, text_encoder_3=None, tokenizer_3=None)
    stock.set_progress_bar_config(disable=True)
    kwargs = dict(num_inference_steps=3, output_type="np")
    ours = pipe("a face of a person with glasses", generator=torch.Generator().manual_seed(0), **kwargs).images
    want = stock("a face of a person with glasses", generator=torch.Generator().manual_seed(0), **kwargs).images
    assert ours.shape == (1, 64, 64, 3)
    assert np.abs(ours - want).max() < 1e-4
    assert pipe.transformer.dtype == torch.float32  # shipped in float16, run in float32
    # its own measured edit defaults and their step count, by name and by the folder the pipeline was loaded from
    from segakit.sega.defaults import EMBEDDED_FLOW_EDIT, default_steps, edit_defaults
    from segakit.sega.guidance import DIFFUSERS_EDIT

    assert edit_defaults("embedded-flow") == edit_defaults(built) == pipe.edit_defaults == EMBEDDED_FLOW_EDIT
    assert EMBEDDED_FLOW_EDIT != DIFFUSERS_EDIT and default_steps("embedded-flow") == default_steps(built) == 25
    assert edit_defaults(tmp_path) == DIFFUSERS_EDIT and default_steps(tmp_path) == 50


def test_embedded_flow_missing_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(embedded_flow, "shipped_path", lambda: tmp_path / "nothing")
    with pytest.raises(UserError, match="embedded flow model is not in this installation"):
        resolve("embedded-flow")


def test_flowedit_takes_the_embedded_flow_models_own_settings_and_the_papers_elsewhere(tmp_path):
    """FlowEdit's defaults: measured on the embedded flow model (benchmarks/flowedit_settings.py), the paper's on any
    other SD3 or FLUX folder; the paper's recipe stays a flag away (the fields given explicitly win)."""
    from segakit.editing.flow import EMBEDDED_FLOW_FLOWEDIT, PAPER, flowedit_defaults
    from segakit.editing.params import EditParams

    assert flowedit_defaults("sd3", "embedded-flow") == EMBEDDED_FLOW_FLOWEDIT != PAPER["sd3"]
    assert flowedit_defaults("sd3", tmp_path) == PAPER["sd3"] and flowedit_defaults("flux") == PAPER["flux"]
    own = EditParams(instruction="add glasses", model="embedded-flow", method="flowedit", steps=None,
                     guidance_scale=None).validate("sd3")  # fmt: skip
    assert (own.steps, own.skip, own.guidance_scale, own.source_guidance) == (50, 0.2, 7.5, 3.5)
    assert own.mask == EMBEDDED_FLOW_FLOWEDIT["mask"] > 0  # LEDITS++'s noise mask, measured to keep more
    paper = EditParams(instruction="add glasses", model="embedded-flow", method="flowedit", steps=50, skip=0.34,
                       guidance_scale=13.5, source_guidance=3.5, mask=0.0).validate("sd3")  # fmt: skip
    assert (paper.steps, paper.skip, paper.guidance_scale, paper.source_guidance, paper.mask) == (
        50,
        0.34,
        13.5,
        3.5,
        0,
    )
    other = EditParams(instruction="add glasses", model=str(tmp_path), method="flowedit", steps=None,
                       guidance_scale=None).validate("sd3")  # fmt: skip
    assert (other.skip, other.guidance_scale, other.mask) == (0.34, 13.5, 0.0)
    for method in ("invert", "sega"):  # the mask is FlowEdit's: the other flow methods leave it off
        assert EditParams(instruction="add glasses", model="embedded-flow", method=method).validate("sd3").mask == 0.0


@pytest.mark.parametrize("recipe", [None, "measured", "paper"])
def test_segakit_edit_on_the_embedded_flow_model_takes_its_own_settings_or_the_papers(monkeypatch, capsys, tmp_path,
                                                                                      recipe):  # fmt: skip
    """`segakit edit --model embedded-flow` runs FlowEdit at the model's measured settings (its noise mask included);
    `--recipe paper` at SD3's published ones, without a mask; a flag given wins over either."""
    from cli_runner import cli
    from PIL import Image

    from segakit.core.images import read_params
    from segakit.editing.flow import EMBEDDED_FLOW_FLOWEDIT, PAPER

    Image.new("RGB", (48, 40), (200, 150, 120)).save(tmp_path / "face.png")
    out = tmp_path / "edited.png"
    args = ["edit", tmp_path / "face.png", "give her glasses", "--model", "embedded-flow", "--source-caption",
            "a face of a woman", "--captions-after", "a face of a woman with glasses", "--steps", 4, "--threads", 1,
            *(["--recipe", recipe] if recipe else [])]  # fmt: skip
    code, _, err = cli(monkeypatch, capsys, *args, "--out", out)
    assert code == 0, err
    p = read_params(out)
    want = PAPER["sd3"] if recipe == "paper" else EMBEDDED_FLOW_FLOWEDIT
    assert p["steps"] == 4 and p["skip"] == round(1 - want["strength"], 6) and p["mask"] == want["mask"]
    assert (p["source_guidance"], p["guidance_scale"]) == (want["source_guidance"], want["target_guidance"])
    code, _, err = cli(monkeypatch, capsys, *args, "--mask", 0.5, "--out", tmp_path / "given.png")
    assert code == 0, err
    assert read_params(tmp_path / "given.png")["mask"] == 0.5
