"""Fair Diffusion (``--fair ATTRIBUTE --method sega``) and Safe Latent Diffusion, the peers of the directions (issue 16)."""

import numpy as np
import pytest
import torch
from cli_runner import cli, sd_folder
from PIL import Image

from segakit import SegaPipeline
from segakit.core.draws import draw_values
from segakit.core.errors import UserError
from segakit.core.images import read_params
from segakit.eval.directions_study.sld import presets, sld_images, sld_pipeline
from segakit.sega.fair import (
    FairDiffusion,
    fair_attributes,
    fair_generate,
    value_edits,
    value_words,
)
from segakit.sega.guidance import Edit

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("model")
    folder = sd_folder(tmp)
    pipe = SegaPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return folder, pipe


def test_value_words_and_edits():
    assert {"presentation", "skin"} <= set(fair_attributes()) and "hat" not in fair_attributes()
    words = value_words("presentation")
    assert words == {"man": "man", "woman": "woman"}
    edits = value_edits(words, "woman", Edit(scale=4.0))
    assert [(e.prompt, e.reverse, e.scale) for e in edits] == [("woman", False, 4.0), ("man", True, 4.0)]
    skin = value_edits(value_words("skin"), "dark")
    assert edits[0].prompt == "woman" and skin[0].prompt == "dark skin" and sum(e.reverse for e in skin) == 4
    with pytest.raises(UserError, match="Fair Diffusion needs an attribute"):
        value_words("hat")


def test_fair_diffusion_draws_what_the_directions_draw():
    fair = FairDiffusion.draw("skin", 40, 5)
    assert fair.choices == draw_values({v: 0.2 for v in value_words("skin")}, 40, 5)
    assert FairDiffusion.draw("skin", 1, 12).choices == [fair.choices[7]]  # image i depends on its seed alone
    assert draw_values({"woman": 0.5, "man": 0.5}, 30, 0) == draw_values({"man": 0.5, "woman": 0.5}, 30, 0)
    assert set(FairDiffusion.draw("presentation", 20, 0, "woman:1,man:0").choices) == {"woman"}
    assert fair.groups() == {v: [i for i, c in enumerate(fair.choices) if c == v] for v in set(fair.choices)}


def test_fair_generate_gives_each_image_its_own_edits_in_seed_order(model):
    _, pipe = model
    fair = FairDiffusion.draw("presentation", 5, 3, edit=Edit(scale=5.0, threshold=0.5, warmup=0))
    assert len(set(fair.choices)) == 2
    gens = [torch.Generator().manual_seed(3 + i) for i in range(5)]
    out = fair_generate(pipe, "a doctor", fair, generator=gens, num_inference_steps=3, output_type="pt")
    assert out.images.shape[0] == 5
    for i, value in enumerate(fair.choices):  # each image as it comes out alone, with its value's edits
        alone = pipe("a doctor", num_inference_steps=3, generator=[torch.Generator().manual_seed(3 + i)],
                     edits=fair.edits(value), output_type="pt").images[0]  # fmt: skip
        assert torch.allclose(out.images[i], alone, atol=1e-4)
    plain = pipe(
        "a doctor", num_inference_steps=3, generator=[torch.Generator().manual_seed(3)], output_type="pt"
    ).images[0]
    assert (out.images[0] - plain).abs().max() > 1e-3  # the edits act


def test_cli_fair_sega_records_the_method_and_the_draw(model, monkeypatch, capsys, tmp_path):
    folder, _ = model
    code, _, err = cli(monkeypatch, capsys, "generate", "a doctor", "--model", folder, "--steps", "2", "-n", "4", "--fair", "presentation",
                       "--method", "sega", "--out", tmp_path / "fd")  # fmt: skip
    assert code == 0, err  # no direction library needed: the edits are words
    params = [read_params(tmp_path / "fd" / f"image-{i:03d}.png") for i in range(4)]
    assert all(p["fair_method"] == "sega" for p in params)
    assert [p["fair_choice"] for p in params] == FairDiffusion.draw("presentation", 4, 0).choices
    code, _, err = cli(
        monkeypatch,
        capsys,
        "generate",
        "--from-png",
        tmp_path / "fd" / "image-001.png",
        "--out",
        tmp_path / "again.png",
    )
    assert code == 0, err
    assert read_params(tmp_path / "again.png")["fair_choice"] == params[1]["fair_choice"]
    same = [np.asarray(Image.open(p)).astype(int) for p in (tmp_path / "fd" / "image-001.png", tmp_path / "again.png")]
    assert np.abs(same[0] - same[1]).max() <= 1


@pytest.mark.parametrize("extra, message", [(["--fair", "presentation", "--method", "clip"], "--method 'clip' is not one of directions, sega"),
                                            (["--method", "sega"], "give --fair ATTRIBUTE too"),
                                            (["--fair", "hat", "--method", "sega"], "Fair Diffusion needs an attribute"),
                                            (["--fair", "presentation=woman:0.7,man:0.7", "--method", "sega"], "sum to 1")])  # fmt: skip
def test_cli_fair_sega_bad_input(model, monkeypatch, capsys, tmp_path, extra, message):
    code, _, err = cli(
        monkeypatch,
        capsys,
        "generate",
        "a doctor",
        "--model",
        model[0],
        "--steps",
        "2",
        *extra,
        "--out",
        tmp_path / "x",
    )
    assert code == 2 and message in err and "Traceback" not in err
    assert not list(tmp_path.glob("x/*.png"))


def test_sld_runs_diffusers_pipeline_unchanged_on_the_components(model):
    _, pipe = model
    sld = sld_pipeline(pipe, "a zombie")
    assert sld.safety_concept == "a zombie" and sld.unet is pipe.unet
    assert set(presets()) == {"off", "weak", "medium", "strong", "max"}
    gens = lambda: [torch.Generator().manual_seed(s) for s in (0, 1)]
    off = sld_images(sld, "a doctor", gens(), 3, "off")
    plain = pipe("a doctor", num_inference_steps=3, num_images_per_prompt=2, generator=gens(), output_type="pt").images
    assert off.shape == plain.shape and torch.allclose(off, plain, atol=1e-4)  # safety off: classifier-free guidance
    # diffusers' presets as they ship: warm-ups of 15 / 10 / 7 / 0 steps; at 8 steps weak and medium never start, strong acts once
    one = lambda: [torch.Generator().manual_seed(0)]
    off8 = sld_images(sld, "a doctor", one(), 8, "off")
    changed = {
        p: (sld_images(sld, "a doctor", one(), 8, p) - off8).abs().max().item()
        for p in ("weak", "medium", "strong", "max")
    }
    assert changed["weak"] == changed["medium"] == 0.0 and changed["strong"] > 0 and changed["max"] > 1e-2, changed
    with pytest.raises(ValueError, match="not one of"):
        sld_images(sld, "a doctor", gens(), 3, "extreme")


def test_pipeline_fair_argument_takes_both_draws(model):
    _, pipe = model
    fair = FairDiffusion.draw("presentation", 4, 9, edit=Edit(scale=5.0, threshold=0.5, warmup=0))
    gens = lambda: [torch.Generator().manual_seed(9 + i) for i in range(4)]  # noqa: E731
    extra = [Edit("glasses", scale=3.0, warmup=0)]
    via_call = pipe(
        "a doctor", num_inference_steps=3, generator=gens(), edits=extra, fair=fair, output_type="pt"
    ).images
    direct = fair_generate(
        pipe, "a doctor", fair, generator=gens(), edits=extra, num_inference_steps=3, output_type="pt"
    ).images
    assert torch.equal(via_call, direct)

    class Rows:  # a library's draw is an h-space offset with a row per image: it joins directions
        def offset(self, batch, shape, device, dtype):
            return torch.arange(batch, dtype=dtype, device=device).view(batch, 1, 1, 1).expand(batch, *shape) * 0.5

    a = pipe(
        "a doctor", num_inference_steps=3, generator=gens(), num_images_per_prompt=4, fair=Rows(), output_type="pt"
    ).images
    b = pipe(
        "a doctor",
        num_inference_steps=3,
        generator=gens(),
        num_images_per_prompt=4,
        directions=[Rows()],
        output_type="pt",
    ).images
    assert torch.equal(a, b) and (a[3] - a[0]).abs().max() > 1e-3
    with pytest.raises(UserError, match="one generator per image"):
        pipe("a doctor", num_inference_steps=2, generator=torch.Generator().manual_seed(0), fair=fair)
    with pytest.raises(UserError, match="takes a direction library's draw"):
        pipe("a doctor", num_inference_steps=2, generator=gens(), fair="presentation")
