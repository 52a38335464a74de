"""The server's limits and rules without a server: request caps, the token rule, the queue, the app's form."""

import contextlib
import threading
import time

import pytest
from cli_runner import cli

from segakit.core.errors import UserError, spelling
from segakit.directions.library import Library
from segakit.sega.guidance import Edit
from segakit.serve.config import Limits, is_loopback, resolve_token
from segakit.serve.form import REMOVE, ConceptRow, Form
from segakit.serve.schema import GenerateRequest, to_params
from segakit.serve.worker import Cancelled, QueueFull, Worker

LIMITS = Limits(max_queue=2, max_steps=30, max_images=2, max_side=128, max_concepts=2, max_sweep=3)


def params(**kw):
    return to_params(GenerateRequest(prompt="a face", **kw), "embedded", LIMITS, Library.load())


@pytest.mark.parametrize(
    "kw,words",
    [
        ({"steps": 31}, "steps 31 is above this server's limit of 30"),
        ({"num_images": 3}, "num_images 3 is above this server's limit of 2"),
        ({"width": 136}, "width 136 is not a multiple of 8 between 8 and this server's limit of 128"),
        ({"height": 60}, "height 60 is not a multiple of 8"),
        ({"edits": ["+a", "+b", "+c"]}, "3 edits were given; this server takes at most 2"),
        ({"edits": ["+a"], "sweep": [0, 1, 2, 3]}, "sweep has 4 scales; this server renders at most 3"),
        ({"seed": 2**63 - 1}, "seed 9223372036854775807 is too large"),
        ({"eta": 2.0}, "eta 2.0 is outside [0, 1]"),
        ({"embeddings": ["x.safetensors"]}, "embeddings names files on the server"),
        ({"apply_guidance": "g.safetensors"}, "apply_guidance names files on the server"),
        ({"momentum_beta": 1.0}, "momentum_beta 1.0 is outside [0, 1)"),
    ],
)
def test_caps_and_cli_checks(kw, words):
    with pytest.raises(UserError, match=None) as err:
        params(**kw)
    with spelling("json"):  # the HTTP API shows the sentence with the JSON field names the client sent
        assert words in str(err.value)


def test_a_request_at_the_caps_passes_and_names_library_directions():
    from segakit.directions.library import Library

    p = params(steps=30, num_images=2, width=128, edits=["+glasses:s=6", "-beard"],
               directions=["skin=dark:0.25", "presentation=man", "glasses=true"])  # fmt: skip
    assert p.steps == 30 and [e.prompt for e in p.edits] == ["glasses", "beard"] and p.edits[1].reverse
    lib = Library.load()  # a direction without a strength gets the library's for it
    assert p.directions[0].endswith("skin-dark.safetensors:0.25")
    assert p.directions[1].endswith(f"presentation-man.safetensors:{lib.strength_of('presentation=man')}")
    assert p.directions[2].endswith(f"glasses-true.safetensors:{lib.strength}")
    assert (
        params(directions=p.directions).directions == p.directions
    )  # the paths a PNG recorded name the same directions


def test_token_rule():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and not is_loopback("0.0.0.0")
    assert resolve_token("127.0.0.1", None) is None
    with pytest.raises(UserError, match="a token is required"):
        resolve_token("0.0.0.0", None)
    with pytest.raises(UserError, match="8 or more"):
        resolve_token("0.0.0.0", "short")
    assert resolve_token("0.0.0.0", "long-enough-token") == "long-enough-token"


def test_token_from_the_environment(monkeypatch):
    monkeypatch.setenv("SEGAKIT_TOKEN", "from-the-environment")
    assert resolve_token("192.168.1.5", None) == "from-the-environment"


def test_serve_refuses_another_address_without_a_token(monkeypatch, capsys):
    monkeypatch.delenv("SEGAKIT_TOKEN", raising=False)
    code, _, err = cli(monkeypatch, capsys, "serve", "--host", "0.0.0.0", "--port", "7861")
    assert code == 2 and "a token is required" in err and "Traceback" not in err
    code, _, err = cli(monkeypatch, capsys, "serve", "--max-queue", "0")
    assert code == 2 and "--max-queue 0 is below 1" in err


def test_worker_bounds_runs_in_order_and_cancels():
    worker = Worker(max_queue=2)
    gate, order = threading.Event(), []

    def slow(check):
        while not gate.is_set():
            check()
            time.sleep(0.01)
        order.append("slow")
        return "slow"

    first = worker.submit("t", {}, slow)
    second = worker.submit("t", {}, lambda check: order.append("second") or "second")
    with pytest.raises(QueueFull) as full:
        worker.submit("t", {}, lambda check: None)
    assert full.value.retry_after >= 1 and "busy with 2 requests" in str(full.value)
    second.cancel()  # not started: dropped
    gate.set()
    assert first.future.result(5) == "slow"
    third = worker.submit("t", {}, lambda check: 1 / 0)  # a failing job is reported, the worker goes on
    with pytest.raises(ZeroDivisionError):
        third.future.result(5)
    gate.clear()
    running = worker.submit("t", {}, slow)
    while worker.queue()["running"] == 0:
        time.sleep(0.01)
    running.cancel()  # started: stops at its next check
    with pytest.raises(Cancelled):
        running.future.result(5)
    assert worker.submit("t", {}, lambda check: 7).future.result(5) == 7
    assert order == ["slow"] and worker.stats.served == 2 and worker.stats.cancelled == 2 and worker.stats.rejected == 1
    worker.close()


def test_worker_frees_the_slot_before_the_result_arrives():
    # on a one-job worker, a client that submits again the moment its result (or error) arrives is never told
    # "busy": when the outcome is handed over (a done-callback runs right then, on the worker's thread), the
    # slot is already free
    worker = Worker(max_queue=1)
    try:
        for task in (lambda check: 7, lambda check: 1 / 0):
            gate, seen = threading.Event(), []
            job = worker.submit("t", {}, lambda check, task=task, gate=gate: gate.wait(5) and task(check))
            job.future.add_done_callback(lambda f, seen=seen: seen.append(worker.queue()))
            gate.set()
            with contextlib.suppress(ZeroDivisionError):
                job.future.result(5)
            assert seen == [{"running": 0, "waiting": 0, "max": 1}]
            again = worker.submit("t", {}, lambda check: 8)  # at once: not QueueFull
            assert again.future.result(5) == 8
        assert worker.stats.rejected == 0 and worker.stats.served == 3 and worker.stats.failed == 1
    finally:
        worker.close()


def test_form_round_trips_through_png_parameters():
    blank = Form(
        steps=20,
        rows=[ConceptRow.blank(Edit(scale=10, threshold=0.8, warmup=5), 30)] * 3,
        strengths={"presentation=woman": 0.0, "skin=dark": 0.0},
    )
    lib = Library.load()
    form = Form.from_params(
        {
            "prompt": "a face",
            "seed": 9,
            "steps": 20,
            "guidance": 6.0,
            "safe": True,
            "fair": "presentation",
            "edits": [
                {
                    "prompt": "glasses",
                    "scale": 6.0,
                    "threshold": 0.9,
                    "warmup": 2,
                    "cooldown": None,
                    "reverse": False,
                    "weight": 1.0,
                },
                {
                    "prompt": "beard",
                    "scale": 3.0,
                    "threshold": 0.7,
                    "warmup": 0,
                    "cooldown": 10,
                    "reverse": True,
                    "weight": 2.0,
                },
            ],
            "directions": [str(lib.folder / "skin-dark.safetensors") + ":0.25"],
        },
        blank,
        lib,
    )
    assert [r.active for r in form.rows] == [True, True, False] and form.rows[1].direction == REMOVE
    assert (
        form.strengths == {"presentation=woman": 0.0, "skin=dark": 0.25} and form.fair == "presentation" and form.safe
    )
    again = Form.from_values(form.to_values(), 3, list(blank.strengths))
    assert again == form
    req = again.request()
    assert [(e.prompt, e.scale, e.cooldown, e.reverse) for e in req.edits] == [
        ("glasses", 6.0, None, False),
        ("beard", 3.0, 10, True),
    ]
    assert req.directions == ["skin=dark:0.25"] and req.seed == 9 and req.fair == "presentation"
    plain = again.request(plain=True)
    assert plain.edits == [] and plain.directions == [] and not plain.safe and plain.fair is None
