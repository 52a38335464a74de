"""The server's surface for callers: an OpenAPI schema with this server's limits, /docs without a CDN, the Gradio
app's named endpoints driven through gradio_client as a Gradio user scripts it, and a bounded schemathesis run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from serve_helpers import running_server

from segakit.serve.config import Limits, ServeConfig

LIMITS = Limits(max_steps=3, max_images=2, max_side=64, max_concepts=2, max_sweep=3)


@pytest.fixture(scope="module")
def server():
    with running_server(ServeConfig(limits=LIMITS)) as (url, service):
        yield url, service


def test_the_schema_carries_the_limits_set_at_start_up(server):
    url, _ = server
    spec = requests.get(f"{url}/openapi.json", timeout=30).json()
    gen = spec["components"]["schemas"]["GenerateRequest"]["properties"]
    steps = next(o for o in gen["steps"]["anyOf"] if o["type"] == "integer")
    assert (steps["minimum"], steps["maximum"]) == (1, 3)
    assert (gen["num_images"]["minimum"], gen["num_images"]["maximum"]) == (1, 2)
    height = next(o for o in gen["height"]["anyOf"] if o["type"] == "integer")
    assert (height["maximum"], height["multipleOf"]) == (64, 8)
    assert gen["edits"]["maxItems"] == 2 and gen["model"]["anyOf"][0]["enum"] == ["embedded"]
    assert (
        "presentation" in gen["fair"]["anyOf"][0]["pattern"] and "hair_style" not in gen["fair"]["anyOf"][0]["pattern"]
    )
    edit = spec["components"]["schemas"]["EditRequest"]["properties"]
    assert edit["captions"]["maximum"] == 10 and edit["inversion"]["anyOf"][0]["enum"] == ["ddim", "ddpm"]
    assert edit["method"]["anyOf"][0]["enum"] == ["onthefly", "sega", "flowedit", "invert"]  # null: the model's default


def test_the_apps_refresh_sliders_reach_the_step_limit(server):
    """Any K the API takes for concept or guidance refresh (up to the steps) fits the app's slider, so a PNG made
    through the API restores into the app."""
    from segakit.serve.webapp import App

    _, service = server
    demo = App(service).blocks()
    sliders = {
        b.elem_id: b
        for b in demo.blocks.values()
        if getattr(b, "elem_id", None) in ("edit-refresh", "guidance-refresh")
    }
    assert {k: (s.minimum, s.maximum) for k, s in sliders.items()} == {
        "edit-refresh": (1, LIMITS.max_steps),
        "guidance-refresh": (1, LIMITS.max_steps),
    }


def test_a_whole_number_written_as_a_float_is_taken_and_steps_left_out_fit_the_limit(server):
    url, _ = server
    r = requests.post(
        f"{url}/api/generate", json={"prompt": "a face of a person", "num_images": 1.0, "seed": 2.0}, timeout=120
    )
    assert r.status_code == 200, r.text
    assert r.json()["images"][0]["parameters"]["steps"] == 3  # the model's 25, capped at this server's 3
    refused = requests.post(f"{url}/api/generate", json={"prompt": "a face", "steps": 9}, timeout=30)
    assert refused.status_code == 400 and refused.json()["error"].startswith(
        "steps 9 is above this server's limit of 3"
    )


def test_docs_work_without_internet(server):
    url, _ = server
    page = requests.get(f"{url}/docs", timeout=30)
    assert page.status_code == 200 and "/docs/assets/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower() and "https://" not in page.text.split("<body>")[-1]
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        r = requests.get(f"{url}/docs/assets/{asset}", timeout=30)
        assert r.status_code == 200 and len(r.content) > 10_000


def test_gradio_client_sees_the_named_endpoints_and_drives_them(server, tmp_path):
    from gradio_client import Client, handle_file
    from PIL import Image

    from segakit.core.images import png_params
    from segakit.world.dataset import samples

    url, _ = server
    client = Client(url + "/", verbose=False)
    api = client.view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == {"/generate", "/strip", "/edit"} and not api["unnamed_endpoints"]
    before, after, files, params, status = client.predict("a face of a person", api_name="/generate")
    assert min(Image.open(after).size) >= 64 and files
    assert (
        json.loads(params)["prompt"] == "a face of a person"
        if params.strip().startswith("{")
        else "a face of a person" in params
    )
    face = next(iter(samples(1, 3)))
    path = tmp_path / "face.png"
    face.image.save(path)
    result, caption, captions, download = client.predict(handle_file(str(path)), "give her glasses", api_name="/edit")
    assert min(Image.open(result).size) >= 64 and caption
    stored = png_params(Path(download[0] if isinstance(download, list) else download).read_bytes())
    assert stored["instruction"] == "give her glasses" and stored["kind"] == "edit"


@pytest.mark.slow
def test_fuzzing_the_api_from_its_schema_finds_no_server_error():
    script = Path(__file__).parents[1] / "scripts" / "fuzz_api.py"
    run = subprocess.run(
        [sys.executable, str(script), "--examples", "8", "--seed", "3"], capture_output=True, text=True, timeout=900
    )
    summary = json.loads(run.stdout[run.stdout.index("{\n") :])
    assert run.returncode == 0, run.stdout[-3000:]
    assert summary["server_errors_5xx"] == 0 and summary["schemathesis_exit"] == 0
    assert summary["refused_share"] < 0.5, summary  # with the limits in the schema, most generated requests are served
