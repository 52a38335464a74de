"""`segakit serve --model FOLDER` on SD3 and FLUX folders: the server starts (API and app), /api/generate gives the
pipeline's own image, /api/edit runs FlowEdit, the rectified-flow inversion or SEGA on it and refuses a field that
only a U-Net uses with one sentence and a 400."""

from __future__ import annotations

import base64
import io
import json

import gradio as gr
import numpy as np
import pytest
import requests
from diffusers import FluxPipeline, StableDiffusion3Pipeline
from PIL import Image
from serve_helpers import running_server
from tiny_flow_models import flux_components, sd3_components

from segakit.core.images import png_params
from segakit.editing.params import EditParams
from segakit.jobs.generate import GenerationParams, render
from segakit.serve.config import Limits, ServeConfig

TOKEN = "flow-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
LIMITS = Limits(max_queue=2, max_steps=20, max_images=2, max_side=64, max_concepts=2, max_body_mb=1.0)
CLASSES = {"sd3": (StableDiffusion3Pipeline, sd3_components), "flux": (FluxPipeline, flux_components)}


@pytest.fixture(scope="module", params=["sd3", "flux"])
def server(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"serve-{request.param}")
    cls, components = CLASSES[request.param]
    cls(**components(tmp / "parts")).save_pretrained(tmp / "model", safe_serialization=True)
    with running_server(ServeConfig(model=str(tmp / "model"), token=TOKEN, limits=LIMITS)) as (url, service):
        yield url, service, request.param


def post(url: str, path: str, body: dict) -> requests.Response:
    return requests.post(f"{url}{path}", data=json.dumps(body), headers=AUTH, timeout=120)


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def face() -> tuple[Image.Image, str]:
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return image, base64.b64encode(buffer.getvalue()).decode()


def test_the_server_starts_and_generates_the_pipelines_image(server):
    url, service, family = server
    health = requests.get(f"{url}/api/health", headers=AUTH, timeout=10).json()
    assert health["status"] == "ok" and health["editing"] and health["directions"] == []
    assert requests.get(f"{url}/", headers=AUTH, timeout=10).status_code == 200  # the app is mounted too
    r = post(url, "/api/generate", {"prompt": "a face", "edits": ["+glasses:s=6,w=0"], "steps": 3, "seed": 2,
                                    "height": 32, "width": 32})  # fmt: skip
    assert r.status_code == 200, r.text
    png = base64.b64decode(r.json()["images"][0]["png"])
    params = png_params(png)
    assert params["model"] == service.config.model and params["edits"][0]["prompt"] == "glasses"
    direct = render(GenerationParams.from_json(r.json()["images"][0]["parameters"]), service.pipe)
    np.testing.assert_array_equal(pixels(png), np.asarray(direct.images[0].convert("RGB")))


@pytest.mark.parametrize("method", ["flowedit", "invert", "sega"])
def test_edit_over_http_matches_a_direct_edit(server, method):
    from segakit.editing import EditPipeline

    url, service, family = server
    image, data = face()
    words = {"concepts": ["+glasses"]} if method == "sega" else {"captions_after": ["a face with glasses"]}
    body = {"image": data, "instruction": "give her glasses", "method": method, "source_caption": "a face",
            "steps": 3, "seed": 1, "size": 32, **words}  # fmt: skip
    r = post(url, "/api/edit", body)
    assert r.status_code == 200, r.text
    png = base64.b64decode(r.json()["images"][0]["png"])
    params = png_params(png)
    assert params["kind"] == "edit" and params["method"] == method and params["steps"] == 3 and params["size"] == 32
    assert params["inversion"] == ("none" if method == "flowedit" else "rf")
    direct = EditPipeline.from_pipe(service.pipe, model_name=service.config.model).run(
        EditParams(instruction="give her glasses", model=service.config.model, method=method, source_caption="a face",
                   steps=3, seed=1, size=32, concepts=words.get("concepts", []),
                   captions_after=words.get("captions_after", []), guidance_scale=None, skip=None),
        image,
    )  # fmt: skip
    np.testing.assert_array_equal(pixels(png), np.asarray(direct.images[0].convert("RGB")))


def test_edit_defaults_to_flowedit_at_the_papers_settings(server):
    url, _, family = server
    _, data = face()
    r = post(url, "/api/edit", {"image": data, "instruction": "give her glasses", "source_caption": "a face",
                                "captions_after": ["a face with glasses"], "size": 32})  # fmt: skip
    assert r.status_code == 200, r.text
    p = r.json()["images"][0]["parameters"]
    want = {"sd3": (20, 13.5, 3.5), "flux": (20, 5.5, 1.5)}[family]  # the paper's steps, capped by the server's 20
    assert p["method"] == "flowedit" and (p["steps"], p["guidance_scale"], p["source_guidance"]) == want


@pytest.mark.parametrize("extra, words", [
    ({"method": "onthefly"}, "method onthefly edits U-Net models"),
    ({"inversion": "ddpm"}, "inversion ddpm applies to U-Net models"),
    ({"mask": 0.9, "method": "sega"}, "mask 0.9 applies to method flowedit on SD3 and FLUX"),
    ({"sega_mask": "noise", "method": "sega"}, "sega_mask noise applies to U-Net models"),
    ({"method": "invert", "skip": 0.3}, "skip 0.3 applies to method flowedit"),
    ({"size": 128}, "size 128 is over this server's limit of 64"),
    ({"size": 30}, "size 30 is not a multiple of"),
])  # fmt: skip
def test_a_field_that_does_not_apply_is_refused_in_one_sentence(server, extra, words):
    url, _, _ = server
    _, data = face()
    body = {"image": data, "instruction": "give her glasses", "source_caption": "a face",
            "captions_after": ["a face with glasses"], "steps": 2, "size": 32, **extra}  # fmt: skip
    r = post(url, "/api/edit", body)
    assert r.status_code == 400, r.text
    message = r.json()["error"]
    assert words in message and "\n" not in message and "Traceback" not in message


def test_the_edit_tab_offers_the_flow_methods(server):
    """The web app's Edit tab on an SD3 or FLUX server: its handler (what the button calls) runs a flow method."""
    from segakit.serve.webapp import App

    url, service, _ = server
    app = App(service)
    assert app.flow
    image, _ = face()
    _, _, _, [path] = app.edit(image, "give her glasses", "flowedit", "a face", "a face with glasses", "", 2, "ddim")
    params = png_params(open(path, "rb").read())
    assert params["method"] == "flowedit" and params["inversion"] == "none" and params["steps"] == 2
    # steps 0 (the slider's start): the method's default, FlowEdit's 50 (SD3) or 28 (FLUX), here capped at the server's 20
    _, _, _, [path] = app.edit(image, "give her glasses", "flowedit", "a face", "a face with glasses", "", 0, "ddim")
    assert png_params(open(path, "rb").read())["steps"] == LIMITS.max_steps
    # the mask slider starts at the model's FlowEdit mask (none on a folder's model); left there, a method that does
    # not mask runs without one, moved, it is refused by name
    assert app.flowedit_mask == 0.0 and app.edit_mask("sega", 0.0) is None and app.edit_mask("flowedit", 0.3) == 0.3
    with pytest.raises(gr.Error, match="mask 0.5 applies to method flowedit"):
        app.edit(image, "give her glasses", "invert", "a face", "a face with glasses", "", 2, "ddim", 0.5)
