"""`segakit batch --ray`: a local Ray cluster (2 CPUs) started in the test, 16 jobs on 2 actors, one actor killed
while it holds a batch; every PNG exists once, byte-identical to a run in this process; in-memory calls (a study's
chunks) on the same actors give this process's arrays. Without Ray, --ray says how to install it."""

import json
import os

import pytest
import torch
from cli_runner import cli

from segakit.directions import LearnConfig
from segakit.directions.learn import shard_latents
from segakit.jobs.calls import CallRunner
from segakit.jobs.jobfile import parse_jobs
from segakit.jobs.local import InProcess
from segakit.jobs.runner import run_jobs
from segakit.jobs.worker import WorkerConfig

STEPS = 3
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # a test never reports anywhere


def _jobs():
    lines = [{"prompt": f"a face of a {'woman' if i % 2 else 'man'}", "seed": i, "steps": STEPS,
              **({"edits": ["+glasses:w=1"]} if i % 4 == 0 else {})} for i in range(16)]  # fmt: skip
    jobs, bad = parse_jobs("\n".join(json.dumps(x) for x in lines))
    assert not bad and len(jobs) == 16
    return jobs


def test_killed_actor_has_its_batch_rerun_and_every_png_written_once(tmp_path):
    ray = pytest.importorskip("ray")
    from segakit.jobs.ray_actors import RayActors, connect

    jobs = _jobs()
    run_jobs(jobs, tmp_path / "local", InProcess(WorkerConfig(threads=1)), batch_size=2)
    started = connect("local", cpus=2)
    try:
        actors = RayActors(2, WorkerConfig(threads=1))
        killed = []

        def kill_a_busy_actor(_):
            if not killed and actors.in_flight():
                victim = actors.in_flight()[0]
                killed.append(ray.get(victim.pid.remote()))
                ray.kill(victim, no_restart=True)

        summary = run_jobs(jobs, tmp_path / "ray", actors, batch_size=2, progress=kill_a_busy_actor)
        # in-memory calls (a study's chunks) on the same actors: the arrays of this process
        runner = CallRunner(actors, "embedded")
        args = [(LearnConfig(name="x", positive="a face", gen_steps=STEPS), first, 2) for first in (0, 2, 4)]
        on_ray = runner.map(shard_latents, args)
        actors.close()
    finally:
        if started:
            ray.shutdown()
    assert killed and actors.retried >= 1  # an actor died holding a batch, and the batch ran again
    assert summary.written == 16 and not summary.failed
    files = sorted(p.name for p in (tmp_path / "ray").iterdir())
    assert files == sorted([j.file for j in jobs] + ["results.jsonl"])  # each PNG once, nothing half written
    local = {p.name: p.read_bytes() for p in (tmp_path / "local").glob("*.png")}
    assert {p.name: p.read_bytes() for p in (tmp_path / "ray").glob("*.png")} == local
    entries = [json.loads(x) for x in (tmp_path / "ray" / "results.jsonl").read_text().splitlines()]
    assert sorted(e["id"] for e in entries) == sorted(j.id for j in jobs)
    here = CallRunner(InProcess(WorkerConfig(threads=1)), "embedded").map(shard_latents, args)
    assert [r.index for r in on_ray] == [0, 1, 2] and all(torch.equal(a.value, b.value) for a, b in zip(on_ray, here))


def test_ray_option_without_ray_says_how_to_install_it(monkeypatch, capsys, tmp_path, hide_ray):
    hide_ray()
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"prompt": "a face"}\n')
    code, _, err = cli(monkeypatch, capsys, "batch", jobs, "--ray", "auto", "--out", tmp_path / "out")
    assert code == 2
    assert (
        err.strip()
        == "error: --ray needs Ray, which is not installed here; install it with pip install 'segakit[ray]'."
    )
