"""EditPipeline and ``segakit edit`` on the embedded model: an edit the oracle reads, PNG round trip, bad input."""

import json
import re

import numpy as np
import pytest
import torch
from cli_runner import cli
from PIL import Image

from segakit.core.errors import UserError
from segakit.editing.image import MAX_SIDE, fit, read_image
from segakit.editing.pipeline import EditPipeline
from segakit.world.oracle import Oracle
from segakit.world.pairs import pair_at


@pytest.fixture(scope="module")
def pipe():
    torch.set_num_threads(1)
    return EditPipeline.from_pretrained("embedded")


@pytest.mark.parametrize("index", [2, 4], ids=["zombie", "brown-hair"])
def test_an_edit_moves_the_oracles_reading(pipe, index):
    """Pairs 2 and 4 of seed 0 (gold captions, 10 steps): two of the three successes of
    benchmarks/editing_onthefly.py --pairs 8 --steps 10 (see docs/results/editing/report.md for the rate over all eight)."""
    pair = pair_at(0, index)
    ((attr, (old, new)),) = pair.changes.items()
    out = pipe(pair.source_image, pair.instruction, source_caption=pair.source_caption, target_captions=[pair.target_caption],
               num_inference_steps=10, seed=0)  # fmt: skip
    src, rec, ed = Oracle.load().predict([pair.source_image, out.reconstructions[0], out.images[0]])
    assert src[attr] == old and rec[attr] == old  # inversion alone keeps it
    assert ed[attr] == new
    assert out.captions_before == [pair.source_caption] and out.captions_after == [pair.target_caption]
    assert len(out.losses) == 10 and out.images[0].size == (64, 64)


@pytest.mark.parametrize("index", [2, 4], ids=["zombie", "brown-hair"])
def test_the_ddpm_variant_gives_the_image_back_unedited_and_moves_the_oracles_reading(pipe, index):
    """inversion="ddpm": with captions after equal to the source caption (a zero direction) the sampled latents are
    the input's exactly; with the gold caption after, the oracle reads the new value (same pairs as above)."""
    from segakit.editing.image import encode

    pair = pair_at(0, index)
    ((attr, (old, new)),) = pair.changes.items()
    same = pipe(pair.source_image, pair.instruction, source_caption=pair.source_caption, target_captions=[pair.source_caption],
                inversion="ddpm", num_inference_steps=10, output_type="latent")  # fmt: skip
    assert torch.allclose(same.images, encode(pipe.vae, pair.source_image), atol=1e-4)
    out = pipe(pair.source_image, pair.instruction, source_caption=pair.source_caption, target_captions=[pair.target_caption],
               inversion="ddpm", num_inference_steps=10)  # fmt: skip
    assert (
        out.params.inversion == "ddpm" and out.params.guidance_scale == 5.0
    )  # the Python API keeps the value it is given
    assert Oracle.load().predict([out.images[0]])[0][attr] == new


def test_a_model_without_captioner_or_writer_needs_captions(pipe):
    assert pipe.captioner is not None  # the embedded model's own (and its caption writer, once shipped)
    bare = EditPipeline.from_pipe(pipe, model_name="custom")
    face = pair_at(0, 0).source_image
    with pytest.raises(UserError, match="no captioner, so the image needs a caption"):
        bare(face, "give her glasses", target_captions=["a woman with glasses"])
    with pytest.raises(UserError, match="no caption writer, so the edited image needs captions"):
        bare(face, "give her glasses", source_caption="a woman")
    with pytest.raises(UserError, match="instruction is empty"):
        pipe(face, " ", source_caption="a woman", target_captions=["a woman with glasses"])


def test_images_of_any_mode_and_shape_are_converted(tmp_path):
    grey = Image.new("L", (120, 80), 128)
    rgba = Image.new("RGBA", (50, 50), (255, 0, 0, 0))  # fully transparent red: white
    assert fit(grey, 64).size == (64, 64) and fit(grey, 64).mode == "RGB"
    assert np.asarray(fit(rgba, 64)).min() == 255
    Image.new("1", (MAX_SIDE + 1, 2)).save(tmp_path / "huge.png")
    with pytest.raises(UserError, match="up to 8192 pixels a side"):
        read_image(tmp_path / "huge.png")


def _face_png(tmp_path, mode="RGB"):
    path = tmp_path / f"face-{mode}.png"
    pair_at(0, 4).source_image.convert(mode).save(path)
    return path


def test_cli_edit_writes_a_png_that_repeats_itself(monkeypatch, capsys, tmp_path):
    src = _face_png(tmp_path, "RGBA")
    out, again = tmp_path / "edited.png", tmp_path / "again.png"
    args = [
        "--source-caption",
        "a woman with blonde hair",
        "--captions-after",
        "a woman with brown hair",
        "--steps",
        "3",
        "--show-captions",
    ]
    code, stdout, stderr = cli(
        monkeypatch, capsys, "edit", src, "turn her hair brown", *args, "--out", out, "--device", "cpu"
    )
    assert code == 0, stderr
    assert "after: a woman with brown hair" in stdout
    params = json.loads(Image.open(out).text["segakit"])
    assert params["kind"] == "edit" and params["instruction"] == "turn her hair brown" and params["steps"] == 3
    assert params["captions_before"] == ["a woman with blonde hair"] and params["image"] == str(src.resolve())
    code, _, stderr = cli(monkeypatch, capsys, "edit", "--from-png", out, "--out", again, "--device", "cpu")
    assert code == 0, stderr
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(again)))


@pytest.mark.parametrize(
    "case, message",
    [
        ("not-an-image", "is not an image that Pillow can read"),
        ("missing-image", "does not exist"),
        ("empty-instruction", "instruction is empty"),
        ("bad-captions", "--captions 11 is outside 1..10"),
        ("lm-missing", "Language model folder .* does not exist"),
        ("lm-pickle", "pickle checkpoint"),
        ("unwritable", "is a file, so no folder can be made inside it"),
        ("not-png", "segakit writes PNG images"),
        ("bad-steps", "--steps 0 is outside"),
        ("bad-inversion", "--inversion 'ddpm2' is not one of ddim, ddpm"),
        ("bad-mask", r"--mask 1\.0 is outside \[0, 1\)"),
        ("mask-on-ddim", "--mask 0.5 applies to --method onthefly --inversion ddpm only"),
    ],
)
def test_cli_bad_input_is_one_sentence_exit_2_and_no_file(monkeypatch, capsys, tmp_path, case, message):
    face = _face_png(tmp_path)
    out = tmp_path / "out.png"
    caps = ["--source-caption", "a woman", "--captions-after", "a woman with brown hair"]
    args = {
        "not-an-image": [tmp_path / "notes.txt", "give her glasses", *caps],
        "missing-image": [tmp_path / "nope.png", "give her glasses", *caps],
        "empty-instruction": [face, "", *caps],
        "bad-captions": [face, "give her glasses", "--captions", "11"],
        "lm-missing": [face, "give her glasses", "--source-caption", "a woman", "--caption-writer", tmp_path / "no-lm"],
        "lm-pickle": [face, "give her glasses", "--source-caption", "a woman", "--caption-writer", tmp_path / "lm"],
        "unwritable": [face, "give her glasses", *caps],
        "not-png": [face, "give her glasses", *caps],
        "bad-steps": [face, "give her glasses", *caps, "--steps", "0"],
        "bad-inversion": [face, "give her glasses", *caps, "--inversion", "ddpm2"],
        "bad-mask": [face, "give her glasses", *caps, "--inversion", "ddpm", "--mask", "1"],
        "mask-on-ddim": [face, "give her glasses", *caps, "--inversion", "ddim", "--mask", "0.5"],
    }[case]
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "lm").mkdir()
    (tmp_path / "lm" / "pytorch_model.bin").write_bytes(b"\x80\x04")
    if case == "unwritable":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "out.png"
    if case == "not-png":
        out = tmp_path / "out.jpg"
    steps = [] if case == "bad-steps" else ["--steps", "2"]
    code, _, stderr = cli(monkeypatch, capsys, "edit", *args, *steps, "--out", out, "--device", "cpu")
    assert code == 2, stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert re.search(message, stderr), stderr
    assert not out.exists() and not list(tmp_path.glob(".out.png.*"))


def test_cli_ddpm_inversion_records_its_default_guidance_and_repeats_itself(monkeypatch, capsys, tmp_path):
    src, out, again = _face_png(tmp_path), tmp_path / "ddpm.png", tmp_path / "again.png"
    args = [
        "--source-caption",
        "a woman with blonde hair",
        "--captions-after",
        "a woman with brown hair",
        "--steps",
        "3",
    ]
    code, _, stderr = cli(monkeypatch, capsys, "edit", src, "turn her hair brown", *args, "--recipe", "paper", "--inversion", "ddpm",
                          "--out", out, "--device", "cpu")  # fmt: skip
    assert code == 0, stderr
    params = json.loads(Image.open(out).text["segakit"])
    assert (
        params["inversion"] == "ddpm"
        and params["guidance_scale"] == 3.5
        and params["skip"] == 0.15
        and params["mask"] == 0.0
    )
    code, _, stderr = cli(monkeypatch, capsys, "edit", "--from-png", out, "--out", again, "--device", "cpu")
    assert code == 0, stderr
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(again)))


def test_cli_sega_method_runs_and_needs_a_concept(monkeypatch, capsys, tmp_path):
    src, out = _face_png(tmp_path), tmp_path / "sega.png"
    code, _, stderr = cli(
        monkeypatch, capsys, "edit", src, "make it pop", "--method", "sega", "--out", out, "--device", "cpu"
    )
    assert code == 2 and "No SEGA concept could be derived" in stderr and "--concept" in stderr and not out.exists()
    code, _, stderr = cli(
        monkeypatch,
        capsys,
        "edit",
        src,
        "turn her hair brown",
        "--method",
        "sega",
        "--concept",
        "+brown hair",
        "--concept",
        "-blond hair",
        "--source-caption",
        "a woman with blonde hair",
        "--steps",
        "3",
        "--out",
        out,
        "--device",
        "cpu",
    )
    assert code == 0, stderr
    params = json.loads(Image.open(out).text["segakit"])
    assert (
        params["method"] == "sega" and params["concepts"] == ["+brown hair", "-blond hair"] and params["skip"] == 0.15
    )


def test_edit_params_round_trip_and_refuse_other_pngs():
    from segakit.editing.params import EditParams

    p = EditParams("give her glasses", captions_after=["a woman with glasses"], concepts=["+glasses"])
    assert EditParams.from_json({**p.to_json(), "kind": "edit", "segakit_version": "0"}) == p
    with pytest.raises(UserError, match="not written by segakit edit"):
        EditParams.from_json({"prompt": "a face"})
    with pytest.raises(UserError, match="unknown fields"):
        EditParams.from_json({**p.to_json(), "kind": "edit", "mystery": 1})
    with pytest.raises(UserError, match="empty caption"):
        EditParams("x", captions_after=[" "]).validate()
    with pytest.raises(UserError, match="mask_tokens 'some' is not one of all, concept"):
        EditParams("x", method="sega", concepts=["+glasses"], mask_tokens="some").validate()
    with pytest.raises(UserError, match="sega_mask 'both' is not one of intersect, attention, noise"):
        EditParams("x", method="sega", concepts=["+glasses"], sega_mask="both").validate()
    with pytest.raises(UserError, match="sega_mask noise applies to method sega only"):
        EditParams("x", sega_mask="noise").validate()
