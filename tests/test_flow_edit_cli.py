"""Editing real images on SD3 and FLUX folders from the command line and the HTTP API, and FLUX's --true-cfg.

`segakit edit --model FOLDER` runs the instruction chain's captions, then FlowEdit, the rectified-flow inversion or
SEGA on it (segakit.editing.flow_pipeline); the PNG records every setting and --from-png repeats it; what only the
other family uses is refused in one sentence.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cli_runner import cli, sd_folder
from diffusers import FluxPipeline, StableDiffusion3Pipeline
from PIL import Image
from tiny_flow_models import flux_components, sd3_components

from segakit.core.images import read_params
from segakit.editing.flow import PAPER

FAMILIES = ("sd3", "flux")
METHODS = ("flowedit", "invert", "sega")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("flow-edit-folders")
    StableDiffusion3Pipeline(**sd3_components(tmp / "parts-sd3")).save_pretrained(tmp / "sd3", safe_serialization=True)
    FluxPipeline(**flux_components(tmp / "parts-flux")).save_pretrained(tmp / "flux", safe_serialization=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(tmp / "face.png")
    sd_folder(tmp)  # tmp/sd: a U-Net model, for the refusals the other way round
    return tmp


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def edit_args(folders, family: str, method: str) -> list:
    words = ["--concept", "+glasses"] if method == "sega" else ["--captions-after", "a face with glasses"]
    return ["edit", folders / "face.png", "give her glasses", "--model", folders / family, "--method", method,
            "--source-caption", "a face", *words, "--steps", 3, "--size", 32, "--threads", 1]  # fmt: skip


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", METHODS)
def test_edit_writes_a_png_that_records_and_repeats_the_edit(monkeypatch, capsys, folders, tmp_path, family, method):
    out = tmp_path / "edited.png"
    code, stdout, err = cli(monkeypatch, capsys, *edit_args(folders, family, method), "--out", out)
    assert code == 0, err
    assert stdout.strip().splitlines()[-1] == str(out) and Image.open(out).size == (32, 32)
    p = read_params(out)
    assert p["kind"] == "edit" and p["method"] == method and p["model"] == str(folders / family)
    assert p["steps"] == 3 and p["size"] == 32 and p["source_caption"] == "a face"
    assert p["inversion"] == ("none" if method == "flowedit" else "rf")
    if method == "flowedit":  # the paper's settings for the family, as recorded
        paper = PAPER[family]
        assert p["guidance_scale"] == paper["target_guidance"] and p["source_guidance"] == paper["source_guidance"]
        assert p["skip"] == round(1 - paper["strength"], 6)  # 0.34, 0.142857
        assert p["captions_after"] == ["a face with glasses"] and p["captions_before"] == ["a face"]
    elif method == "invert":
        assert p["guidance_scale"] == 1.0 and p["skip"] == 0.0 and "eta" not in p  # RF-Inversion's controllers off
    else:
        assert p["concepts"] == ["+glasses"] and p["guidance_scale"] == 5.0 and p["threshold"] == 0.9
    # the U-Net-only choices are not what a flow edit records
    assert p["mask"] == 0.0 and not p["blend"] and p["sega_mask"] == "intersect"
    again = tmp_path / "again.png"
    code, _, err = cli(monkeypatch, capsys, "edit", "--from-png", out, "--out", again, "--threads", 1)
    assert code == 0, err
    assert np.array_equal(pixels(again), pixels(out))


def test_cli_edit_is_the_python_pipelines_edit(monkeypatch, capsys, folders, tmp_path):
    """The command line runs `EditPipeline.from_pipe(SegaPipeline.from_pretrained(FOLDER))` and nothing else."""
    from segakit import SegaPipeline
    from segakit.editing import EditPipeline
    from segakit.editing.flow_pipeline import FlowEditPipeline

    out = tmp_path / "cli.png"
    assert cli(monkeypatch, capsys, *edit_args(folders, "sd3", "invert"), "--eta", 0.5, "--out", out)[0] == 0
    pipe = EditPipeline.from_pipe(SegaPipeline.from_pretrained(folders / "sd3"))
    assert isinstance(pipe, FlowEditPipeline) and pipe.family == "sd3"
    steps = []
    result = pipe(Image.open(folders / "face.png"), "give her glasses", method="invert", source_caption="a face",
                  target_captions=["a face with glasses"], num_inference_steps=3, size=32, eta=0.5,
                  callback=lambda done, total: steps.append((done, total)))  # fmt: skip
    assert np.array_equal(pixels(out), np.asarray(result.images[0], dtype=np.int16))
    assert steps == [(k, 6) for k in range(1, 7)] and read_params(out)["eta"] == 0.5  # inversion, then sampling


def test_flowedits_noise_mask_from_the_command_line_is_the_pipelines(monkeypatch, capsys, folders, tmp_path):
    """`--mask Q` with FlowEdit: the image `FlowEditPipeline(..., mask=Q)` makes, recorded and repeated from the PNG,
    and not the unmasked edit."""
    from segakit import SegaPipeline
    from segakit.editing import EditPipeline

    out, plain = tmp_path / "masked.png", tmp_path / "plain.png"
    args = edit_args(folders, "sd3", "flowedit")
    assert cli(monkeypatch, capsys, *args, "--mask", 0.7, "--skip", 0, "--out", out)[0] == 0
    assert cli(monkeypatch, capsys, *args, "--skip", 0, "--out", plain)[0] == 0
    assert read_params(out)["mask"] == 0.7 and not np.array_equal(pixels(out), pixels(plain))
    pipe = EditPipeline.from_pipe(SegaPipeline.from_pretrained(folders / "sd3"))
    result = pipe(Image.open(folders / "face.png"), "give her glasses", source_caption="a face",
                  target_captions=["a face with glasses"], num_inference_steps=3, size=32, skip=0.0, mask=0.7)  # fmt: skip
    assert np.array_equal(pixels(out), np.asarray(result.images[0], dtype=np.int16))
    again = tmp_path / "again.png"
    assert cli(monkeypatch, capsys, "edit", "--from-png", out, "--out", again, "--threads", 1)[0] == 0
    assert np.array_equal(pixels(again), pixels(out))


def test_from_pretrained_gives_the_flow_pipeline_and_sega_asks_for_segas_loop(folders):
    """Without SegaPipeline the editing layer still runs FlowEdit and the inversion on diffusers' own pipeline; SEGA
    on the inversion needs SegaPipeline's loop and says how to get it."""
    from segakit import SegaPipeline
    from segakit.core.errors import UserError
    from segakit.editing import EditPipeline

    image = Image.open(folders / "face.png")
    plain = EditPipeline.from_pretrained(folders / "flux")
    kwargs = dict(source_caption="a face", target_captions=["a face with glasses"], num_inference_steps=2, size=32)
    out = plain(image, "give her glasses", **kwargs)
    sega = EditPipeline.from_pretrained(folders / "flux", pipeline_class=SegaPipeline)
    assert np.array_equal(np.asarray(out.images[0]), np.asarray(sega(image, "give her glasses", **kwargs).images[0]))
    assert out.params.method == "flowedit" and out.reconstructions[0].size == (32, 32)
    with pytest.raises(UserError, match="runs SegaPipeline's sampling loop"):
        plain(image, "give her glasses", method="sega", source_caption="a face", num_inference_steps=2, size=32)
    assert sega(image, "give her glasses", method="sega", source_caption="a face", num_inference_steps=2,
                size=32).params.concepts == ["+glasses"]  # fmt: skip


def test_the_instruction_chain_writes_the_captions_of_a_flow_edit(monkeypatch, capsys, folders, tmp_path):
    """Only an image and an instruction: a captioner captions the image and a caption writer writes the captions
    before and after (here the embedded model's own, given by folder), then FlowEdit edits along them."""
    from segakit.editing.caption_writer import EMBEDDED_CAPTION_WRITER
    from segakit.editing.captioner import EMBEDDED_CAPTIONER

    out = tmp_path / "chain.png"
    code, stdout, err = cli(monkeypatch, capsys, "edit", folders / "face.png", "give her glasses", "--model", folders / "sd3",
                            "--captioner", EMBEDDED_CAPTIONER, "--caption-writer", EMBEDDED_CAPTION_WRITER, "--captions", 2,
                            "--steps", 2, "--threads", 1, "--show-captions", "--out", out)  # fmt: skip
    assert code == 0, err
    p = read_params(out)
    assert p["method"] == "flowedit" and p["source_caption"] and len(p["captions_after"]) == 2 and "tries" in p
    assert f"source caption: {p['source_caption']}" in stdout and f"after: {p['captions_after'][0]}" in stdout


def test_the_embedded_flow_model_brings_the_embedded_captioner_and_writer(folders):
    from segakit import SegaPipeline
    from segakit.editing import EditPipeline

    sd3 = SegaPipeline.from_pretrained(folders / "sd3")
    assert EditPipeline.from_pipe(sd3, model_name="embedded-flow").captioner is not None  # same faces world
    assert EditPipeline.from_pipe(sd3, model_name="custom").captioner is None


def test_flow_edit_without_a_caption_writer_asks_for_captions(monkeypatch, capsys, folders, tmp_path):
    args = ["edit", folders / "face.png", "give her glasses", "--model", folders / "flux", "--source-caption", "a face",
            "--steps", 2, "--size", 32, "--out", tmp_path / "x.png"]  # fmt: skip
    code, _, err = cli(monkeypatch, capsys, *args)
    assert code == 2 and "no caption writer" in err and "--captions-after" in err and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("model, extra, words", [
    ("sd3", ["--method", "onthefly"], "--method onthefly edits U-Net models"),
    ("flux", ["--method", "invert", "--mask", 0.9], "--mask 0.9 applies to --method flowedit on SD3 and FLUX"),
    ("sd3", ["--mask", 1.0], "--mask 1.0 is outside [0, 1)"),
    ("flux", ["--inversion", "ddpm"], "--inversion ddpm applies to U-Net models"),
    ("sd3", ["--blend"], "--blend True applies to U-Net models"),
    ("sd3", ["--recipe", "measured"], "--recipe measured is a setting measured on the embedded models"),
    ("sd3", ["--method", "invert", "--skip", 0.2], "--skip 0.2 applies to --method flowedit"),
    ("flux", ["--eta", 0.5], "--eta 0.5 is RF-Inversion's pull towards the image, for --method invert only"),
    ("flux", ["--concept", "+hat"], "apply to --method sega"),
    ("flux", ["--size", 33], "--size 33 is not a multiple of"),
    ("sd", ["--method", "flowedit"], "--method flowedit edits SD3 and FLUX models"),
    ("sd", ["--eta", 0.5], "--eta 0.5 is RF-Inversion's"),
    ("sd", ["--size", 64], "--size 64 applies to SD3 and FLUX models"),
])  # fmt: skip
def test_the_other_familys_options_are_refused_in_one_sentence(
    monkeypatch, capsys, folders, tmp_path, model, extra, words
):
    out = tmp_path / "refused.png"
    args = ["edit", folders / "face.png", "give her glasses", "--model", folders / model, "--source-caption", "a face",
            "--captions-after", "a face with glasses", "--steps", 2, *extra, "--out", out]  # fmt: skip
    code, _, err = cli(monkeypatch, capsys, *args)
    assert code == 2, err
    assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_further_turns_edit_the_previous_result_on_a_flow_model(monkeypatch, capsys, folders, tmp_path):
    out = tmp_path / "two.png"
    code, _, err = cli(monkeypatch, capsys, *edit_args(folders, "sd3", "flowedit"), "--then", "make her smile",
                       "--then-captions-after", "a smiling face with glasses", "--out", out)  # fmt: skip
    assert code == 0, err
    turns = read_params(out)["turns"]
    assert len(turns) == 1 and turns[0]["method"] == "flowedit" and turns[0]["instruction"] == "make her smile"
    assert turns[0]["source_caption"] == "a face with glasses"  # the first turn's caption after (OnTheFly's chain)
    again = tmp_path / "again.png"
    assert cli(monkeypatch, capsys, "edit", "--from-png", out, "--out", again)[0] == 0
    assert np.array_equal(pixels(again), pixels(out))


# ---- FLUX's true CFG on the command line


def test_true_cfg_is_recorded_and_round_trips(monkeypatch, capsys, folders, tmp_path):
    base = ["generate", "a face", "--model", folders / "flux", "--steps", 2, "--height", 32, "--width", 32, "--seed", 5]
    assert cli(monkeypatch, capsys, *base, "--out", tmp_path / "plain.png")[0] == 0
    assert "true_cfg" not in read_params(tmp_path / "plain.png")  # off: absent, as before the option existed
    code, _, err = cli(monkeypatch, capsys, *base, "--negative", "", "--true-cfg", 3, "--out", tmp_path / "cfg.png")
    assert code == 0, err
    p = read_params(tmp_path / "cfg.png")
    assert p["true_cfg"] == 3.0 and p["negative_prompt"] == ""
    reference = FluxPipeline.from_pretrained(folders / "flux", local_files_only=True)
    want = reference("a face", negative_prompt="", true_cfg_scale=3.0, num_inference_steps=2, height=32, width=32,
                     generator=torch.Generator().manual_seed(5)).images[0]  # fmt: skip
    assert np.abs(pixels(tmp_path / "cfg.png") - np.asarray(want, dtype=np.int16)).max() <= 1
    assert np.abs(pixels(tmp_path / "cfg.png") - pixels(tmp_path / "plain.png")).max() > 0
    code, _, err = cli(
        monkeypatch, capsys, "generate", "--from-png", tmp_path / "cfg.png", "--out", tmp_path / "again.png"
    )
    assert code == 0, err
    assert np.array_equal(pixels(tmp_path / "again.png"), pixels(tmp_path / "cfg.png"))
    assert read_params(tmp_path / "again.png")["true_cfg"] == 3.0


@pytest.mark.parametrize("model, extra, words", [
    ("sd3", ["--true-cfg", 3], "--true-cfg 3.0 is for FLUX models; on SD3 models use --guidance"),
    ("flux", ["--true-cfg", 3], "--true-cfg 3.0 needs a --negative on FLUX"),
    ("flux", ["--negative", "blurry"], "--negative acts on FLUX only under true CFG; pass --true-cfg above 1"),
    ("flux", ["--negative", "", "--true-cfg", 0.5], "--true-cfg 0.5 is below 1"),
])  # fmt: skip
def test_true_cfg_refusals_name_the_flags(monkeypatch, capsys, folders, tmp_path, model, extra, words):
    out = tmp_path / "x.png"
    args = ["generate", "a face", "--model", folders / model, "--steps", 2, "--height", 32, "--width", 32, *extra]
    code, _, err = cli(monkeypatch, capsys, *args, "--out", out)
    assert code == 2 and words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_true_cfg_in_a_batch_job_file(monkeypatch, capsys, folders, tmp_path):
    """A JOBS line with true_cfg runs on a FLUX folder, in its own batch, and its PNG repeats with --from-png."""
    import json

    from segakit.jobs.batching import plan
    from segakit.jobs.jobfile import parse_jobs

    common = {"prompt": "a face", "model": str(folders / "flux"), "steps": 2, "height": 32, "width": 32}
    text = "\n".join(json.dumps(x) for x in (common, {**common, "negative_prompt": "", "true_cfg": 4}))
    jobs, errors = parse_jobs(text)
    assert not errors and [j.params.true_cfg for j in jobs] == [1.0, 4.0]
    assert "true_cfg" not in jobs[0].params.to_json() and len(plan(jobs)) == 2  # never batched with true CFG off
    _, errors = parse_jobs('{"prompt": "a face", "true_cfg": "x"}')
    assert len(errors) == 1 and "true_cfg" in str(errors[0])
    (tmp_path / "jobs.jsonl").write_text(text)
    code, _, err = cli(monkeypatch, capsys, "batch", tmp_path / "jobs.jsonl", "--out", tmp_path / "run")
    assert code == 0, err
    png = tmp_path / "run" / jobs[1].file
    assert read_params(png)["true_cfg"] == 4.0
    code, _, err = cli(monkeypatch, capsys, "generate", "--from-png", png, "--out", tmp_path / "again.png")
    assert code == 0, err
    assert np.array_equal(pixels(tmp_path / "again.png"), pixels(png))
