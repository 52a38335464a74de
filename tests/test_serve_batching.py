"""The server's shared calls: requests that can share a denoiser batch run together and get their own images.

The worker's rules with stand-in tasks (which jobs join a call, the row cap, cancellation, failures), then the
embedded model at 3 steps through :class:`segakit.serve.service.Service` (no HTTP): requests with different prompts,
seeds, image counts and concepts in one call give the images each gives alone, within the batch tolerance.
"""

import io
import threading
import time
from concurrent.futures import CancelledError

import numpy as np
import pytest
import torch
from cli_runner import cli
from PIL import Image

from segakit.core.errors import UserError
from segakit.directions.library import Library
from segakit.jobs.batching import call_key
from segakit.jobs.generate import GenerationParams, render
from segakit.sega.guidance import Edit
from segakit.serve.config import Limits, ServeConfig
from segakit.serve.schema import GenerateRequest, to_params
from segakit.serve.service import Service
from segakit.serve.worker import Cancelled, Job, Worker

TOLERANCE = 1  # a pixel value (0-255) of a request run in a shared call vs alone (docs/serving.md, batching)


def blocker(worker: Worker):
    """A job that holds the worker until the returned event is set, so that the next jobs wait and meet."""
    gate, started = threading.Event(), threading.Event()
    job = worker.submit("block", {}, lambda check: started.set() or gate.wait(10))
    assert started.wait(10)
    return gate, job


def stand_in(worker: Worker, key, rows: int, value, calls: list, fail: bool = False):
    """A job whose shared call records which jobs it ran and gives each its payload (an exception when ``fail``)."""

    def together(jobs, check):
        calls.append([j.payload for j in jobs])
        if fail:
            raise RuntimeError("the shared call broke")
        return [ValueError("bad") if j.payload == "bad" else j.payload for j in jobs]

    return worker.submit("t", {}, lambda check: ("alone", value), key=key, rows=rows, payload=value, together=together)


def test_jobs_of_one_key_share_a_call_within_the_row_cap_and_a_cancelled_one_leaves_it():
    worker = Worker(max_queue=8, max_rows=10)
    try:
        gate, _ = blocker(worker)
        calls = []
        a = stand_in(worker, "k", 4, "a", calls)
        other = stand_in(worker, "other", 2, "o", calls)  # another key: its own call
        b = stand_in(worker, "k", 4, "b", calls)
        gone = stand_in(worker, "k", 1, "gone", calls)
        c = stand_in(worker, "k", 4, "c", calls)  # 4 + 4 + 4 > 10: the next call
        gone.cancel()  # cancelled while waiting: left out of the call
        gate.set()
        assert [j.future.result(5) for j in (a, b, c, other)] == ["a", "b", ("alone", "c"), ("alone", "o")]
        assert calls == [["a", "b"]]  # c and o ran alone, each the only one of its call
        assert worker.stats.calls == 4 and worker.stats.served == 5 and worker.stats.cancelled == 1
    finally:
        worker.close()


def test_a_call_left_with_one_job_after_a_cancel_runs_it_alone():
    worker = Worker(max_queue=4, max_rows=10)
    try:
        calls = []

        def together(jobs, check):
            calls.append(jobs)
            return [j.payload for j in jobs]

        a, b = (Job(i, "t", {}, lambda check, p=p: ("alone", p), key="k", payload=p, together=together)
                for i, p in ((1, "a"), (2, "b")))  # fmt: skip
        b.cancel()  # between being taken for the call and the call's start
        assert worker._run_together([a, b]) == 1
        assert a.future.result(1) == ("alone", "a") and b.future.cancelled() and calls == []
    finally:
        worker.close()


def test_a_failing_job_does_not_fail_the_others():
    worker = Worker(max_queue=8, max_rows=10)
    try:
        gate, _ = blocker(worker)
        calls = []
        good, bad = stand_in(worker, "k", 2, "good", calls), stand_in(worker, "k", 2, "bad", calls)
        gate.set()
        assert good.future.result(5) == "good"  # its outcome in the shared call
        with pytest.raises(ValueError):
            bad.future.result(5)
        # a shared call that breaks as a whole: each job runs again alone
        gate, _ = blocker(worker)
        x, y = stand_in(worker, "k", 2, "x", calls, fail=True), stand_in(worker, "k", 2, "y", calls, fail=True)
        gate.set()
        assert x.future.result(5) == ("alone", "x") and y.future.result(5) == ("alone", "y")
        assert worker.stats.failed == 1
    finally:
        worker.close()


def test_a_job_cancelled_during_the_shared_call_is_dropped_and_the_call_stops_when_all_are():
    worker = Worker(max_queue=8, max_rows=10)
    try:
        gate, _ = blocker(worker)
        inside, release = threading.Event(), threading.Event()

        def together(jobs, check):
            inside.set()
            release.wait(10)
            check()  # raises only once every job of the call is cancelled
            return [j.payload for j in jobs]

        kw = {"key": "k", "rows": 1, "together": together}
        kept, dropped = (worker.submit("t", {}, lambda check: None, payload=p, **kw) for p in ("kept", "dropped"))
        gate.set()
        assert inside.wait(5)
        dropped.cancel()
        release.set()
        assert kept.future.result(5) == "kept"
        with pytest.raises(Cancelled):
            dropped.future.result(5)

        def stepping(jobs, check):
            while True:
                check()
                time.sleep(0.01)

        gate, _ = blocker(worker)
        kw["together"] = stepping
        both = [worker.submit("t", {}, lambda check: None, payload=p, **kw) for p in (1, 2)]
        gate.set()
        while worker.queue()["running"] < 2:
            time.sleep(0.01)
        for job in both:
            job.cancel()
        for job in both:
            with pytest.raises(Cancelled):
                job.future.result(5)
    finally:
        worker.close()


def test_the_key_lets_concepts_differ_but_not_what_the_call_shares():
    base = GenerationParams("a face", steps=4)
    same = [
        GenerationParams("a man", seed=3, num_images=2, steps=4, edits=[Edit("glasses")], edit_refresh=2),
        GenerationParams("a woman", steps=4, momentum_beta=0.2, quantile_over="image"),
    ]
    assert all(call_key(p, concepts_apart=True) == call_key(base, concepts_apart=True) for p in same)
    assert call_key(same[0]) != call_key(base)  # the batch runner keeps concepts in its key
    other = [GenerationParams("a face", steps=5), GenerationParams("a face", steps=4, guidance=3.0),
             GenerationParams("a face", steps=4, height=32, width=32),
             GenerationParams("a face", steps=4, negative_prompt="hat")]  # fmt: skip
    assert len({call_key(p, concepts_apart=True) for p in [base, *other]}) == 5
    alone = [GenerationParams("a face", fair="presentation"), GenerationParams("a face", safe=True),
             GenerationParams("a face", edits=[Edit("x")], sweep=[0, 1]), GenerationParams("a face", directions=["d:1"])]  # fmt: skip
    assert [call_key(p, concepts_apart=True) for p in alone] == [None] * 4


def test_serve_refuses_a_batch_cap_below_one(monkeypatch, capsys):
    code, _, err = cli(monkeypatch, capsys, "serve", "--max-batch-rows", "0")
    assert code == 2 and "--max-batch-rows 0 is below 1" in err and "Traceback" not in err


# ---- the embedded model


@pytest.fixture(scope="module")
def service():
    svc = Service.load(ServeConfig(limits=Limits(max_queue=8, max_steps=10, max_batch_rows=32)))
    yield svc
    svc.close()


def pixels(png: bytes) -> np.ndarray:

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def request(**kw) -> GenerationParams:
    return to_params(GenerateRequest(steps=3, **kw), "embedded", Limits(max_steps=10), Library.load())


def test_requests_with_different_prompts_seeds_and_concepts_share_a_call_and_keep_their_images(service):
    asked = [request(prompt="a face of a man", seed=1, edits=["+glasses:w=1"]),
             request(prompt="a portrait of a woman", seed=4, num_images=2, edits=["-smile:w=0", "+hat:w=1"], edit_refresh=2),
             request(prompt="a face", seed=7)]  # fmt: skip
    gate, _ = blocker(service.worker)
    calls = service.worker.stats.calls
    jobs = [service.submit(p) for p in asked]
    gate.set()
    got = [j.future.result(60) for j in jobs]
    assert service.worker.stats.calls == calls + 2  # the blocker's, then one for the three requests
    for params, images in zip(asked, got):
        alone = render(params, service.pipe)
        assert len(images) == params.num_images
        for image, expected, meta in zip(images, alone.images, alone.params):
            assert image.params == meta  # the same parameters (seed + i, concepts with the model's defaults)
            diff = np.abs(pixels(image.png) - np.asarray(expected, dtype=np.int16))
            assert diff.max() <= TOLERANCE


def test_a_bad_or_cancelled_request_leaves_the_others_their_images(service):
    good = request(prompt="a face", seed=2, edits=["+glasses:w=1"])
    bad = GenerationParams("a face", steps=3, edit_refresh=0)  # refused only when the shared call prepares it
    assert call_key(bad, concepts_apart=True) == call_key(good, concepts_apart=True)
    gate, _ = blocker(service.worker)
    jobs = [service.submit(p) for p in (good, bad, request(prompt="a man", seed=5))]
    jobs[2].cancel()
    gate.set()
    (image,) = jobs[0].future.result(60)
    with pytest.raises(UserError, match="0 is neither a whole number of 1 or more"):
        jobs[1].future.result(60)
    with pytest.raises(CancelledError):  # cancelled before the call: dropped
        jobs[2].future.result(60)
    alone = render(good, service.pipe)
    assert image.params == alone.params[0]
    assert np.abs(pixels(image.png) - np.asarray(alone.images[0], dtype=np.int16)).max() <= TOLERANCE


def test_edit_groups_refuse_what_ties_a_call_to_one_set_of_images(service):
    from segakit.sega.groups import EditGroup

    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    kw = {"num_inference_steps": 2, "generator": gens, "output_type": "latent"}
    with pytest.raises(UserError, match=r"edit_groups cover \[1, 2\] images; give each group 1 or more, 2 in all"):
        service.pipe(["a", "b"], edit_groups=[EditGroup(1), EditGroup(2)], **kw)
    with pytest.raises(UserError, match="cannot be combined with edits, record_guidance"):
        service.pipe(["a", "b"], edit_groups=[EditGroup(2)], edits=[Edit("x")], record_guidance=True, **kw)


def test_edit_refresh_reaches_the_pipeline_and_the_png(service, monkeypatch):
    from segakit.core.images import png_params
    from segakit.sega.pipeline import SegaPipeline

    seen = []
    original = SegaPipeline.__call__

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("edit_refresh"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SegaPipeline, "__call__", spy)
    params = service.params(GenerateRequest(prompt="a face", steps=3, edits=["+glasses:w=0"], edit_refresh=3))
    (image,) = service.generate(params)
    assert seen == [3] and image.params["edit_refresh"] == 3 and png_params(image.png)["edit_refresh"] == 3
    (auto,) = service.generate(
        service.params(GenerateRequest(prompt="a face", steps=3, edits=["+hat"], edit_refresh="auto"))
    )
    assert seen[-1] == "auto" and png_params(auto.png)["edit_refresh"] == "auto"
    # exact SEGA stays out of the parameters, as in the PNGs written before concept refresh
    (plain,) = service.generate(service.params(GenerateRequest(prompt="a face", steps=3, edits=["+glasses:w=0"])))
    assert "edit_refresh" not in plain.params


def test_edit_refresh_is_checked_in_the_users_words_and_in_the_schema(service):
    from segakit.core.errors import spelling
    from segakit.serve.api import build_api

    for value in (0, -2):
        with pytest.raises(UserError) as err:
            service.params(GenerateRequest(prompt="a face", edit_refresh=value))
        with spelling("json"):
            assert f"edit_refresh {value} is neither a whole number of 1 or more (1 is exact SEGA) nor 'auto'." in str(
                err.value
            )
    field = build_api(service).openapi()["components"]["schemas"]["GenerateRequest"]["properties"]["edit_refresh"]
    assert field["default"] == 1 and {"type": "integer", "minimum": 1} in field["anyOf"]
    with pytest.raises(Exception, match="edit_refresh"):  # neither a number nor "auto": pydantic's 422
        GenerateRequest(prompt="a face", edit_refresh="often")


def test_the_apps_form_carries_edit_refresh():
    from segakit.serve.form import ConceptRow, Form

    blank = Form(rows=[ConceptRow.blank(Edit(scale=10, threshold=0.8, warmup=5), 30)] * 2)
    form = Form.from_params({"prompt": "a face", "edits": [{"prompt": "glasses"}], "edit_refresh": 4}, blank)
    assert form.edit_refresh == 4 and Form.from_values(form.to_values(), 2, []) == form
    assert form.request().edit_refresh == 4 and form.request(plain=True).edit_refresh == 1
    assert Form.from_values(form.to_values()[:-2], 2, []).edit_refresh == 1  # a caller from before the options
    auto = Form.from_params({"prompt": "a face", "steps": 50, "edit_refresh": "auto"}, blank)
    assert auto.edit_refresh == 6  # the slider shows the K that "auto" took at the PNG's steps
    # guidance refresh: on the 'before' image too (it is not a concept's), from a PNG, and left out by old callers
    fast = Form.from_params({"prompt": "a face", "edits": [{"prompt": "hat"}], "guidance_refresh": 2}, blank)
    assert fast.guidance_refresh == 2 and Form.from_values(fast.to_values(), 2, []) == fast
    assert fast.request().guidance_refresh == 2 and fast.request(plain=True).guidance_refresh == 2
    assert Form.from_values(fast.to_values()[:-1], 2, []).guidance_refresh == 1


def test_guidance_refresh_and_true_cfg_post_back_from_a_png_and_are_checked_in_json_words(service, monkeypatch):
    from segakit.core.errors import spelling
    from segakit.core.images import png_params
    from segakit.serve.api import build_api

    params = service.params(GenerateRequest(prompt="a face", steps=3, edits=["+glasses:w=0"], guidance_refresh=2))
    (image,) = service.generate(params)
    saved = png_params(image.png)
    assert saved["guidance_refresh"] == 2
    again = service.params(GenerateRequest(**saved))  # a PNG's parameters post back unchanged
    pixels = [np.asarray(Image.open(io.BytesIO(x.png))) for x in (image, *service.generate(again))]
    assert again.guidance_refresh == 2 and np.array_equal(*pixels)
    with spelling("json"):
        with pytest.raises(UserError) as err:
            service.params(GenerateRequest(prompt="a face", guidance_refresh=0))
        assert str(err.value).startswith("guidance_refresh 0 is not a whole number of 1 or more")
        with pytest.raises(UserError) as err:
            service.generate(
                service.params(GenerateRequest(prompt="a face", steps=2, guidance=1.0, guidance_refresh=2))
            )
        assert "guidance_refresh" in str(err.value) and "guidance" in str(err.value)
        with pytest.raises(UserError) as err:  # the embedded model is a U-Net: true CFG is FLUX's
            service.generate(service.params(GenerateRequest(prompt="a face", steps=2, true_cfg=4.0)))
        assert str(err.value).startswith("true_cfg 4.0 is for FLUX models")
    props = build_api(service).openapi()["components"]["schemas"]["GenerateRequest"]["properties"]
    assert props["guidance_refresh"]["minimum"] == 1 and props["true_cfg"]["minimum"] == 1


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_edit_groups_on_flow_transformers_give_each_group_its_images_alone(family, tmp_path):
    # on SD3 (classifier-free guidance) and FLUX (distilled guidance: concepts against the prompt's own estimate)
    from diffusers import FluxPipeline, StableDiffusion3Pipeline
    from tiny_flow_models import flow_pipe, flux_components, sd3_components

    from segakit.sega.groups import EditGroup

    if family == "sd3":
        pipe, kw = flow_pipe(StableDiffusion3Pipeline, sd3_components(tmp_path)), {}
    else:
        pipe, kw = (
            flow_pipe(FluxPipeline, flux_components(tmp_path)),
            {"height": 32, "width": 32, "max_sequence_length": 32},
        )
    kw.update(num_inference_steps=3, output_type="latent")
    asked = [("a face with glasses", [0], [Edit("beard", scale=5, threshold=0.5, warmup=0)], 1),
             ("a face", [1, 2], [Edit("hat", scale=4, threshold=0.5, warmup=1), Edit("smile", scale=3, warmup=0)], 2),
             ("a man", [3], [], 1)]  # fmt: skip
    gens = lambda seeds: [torch.Generator().manual_seed(s) for s in seeds]  # noqa: E731
    alone = torch.cat([pipe(p, num_images_per_prompt=len(s), generator=gens(s), edits=e, edit_refresh=k, **kw).images
                       for p, s, e, k in asked])  # fmt: skip
    together = pipe([p for p, s, _, _ in asked for _ in s], generator=gens([x for _, s, _, _ in asked for x in s]),
                    edit_groups=[EditGroup(len(s), e, edit_refresh=k) for _, s, e, k in asked], **kw).images  # fmt: skip
    assert (alone - together).abs().max() <= 1e-4
