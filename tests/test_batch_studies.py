"""The studies and the direction learner through the batch runner: the SEGA study, the directions study, the
editing study and the learner's latents give the same numbers in this process and on two local worker processes (one torch thread
everywhere, small random models saved as folders the workers load), and an interrupted call map leaves the
workers usable."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from segakit.jobs.calls import CallRunner
from segakit.jobs.local import InProcess, LocalWorkers
from segakit.jobs.worker import WorkerConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def workers():
    pool = LocalWorkers(2, WorkerConfig(threads=1))  # one pool for the module: starting processes is the slow part
    yield pool
    pool.close()


def _save(pipe, folder):
    from diffusers import StableDiffusionPipeline

    parts = {k: getattr(pipe, k) for k in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")}
    StableDiffusionPipeline(
        **parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    ).save_pretrained(folder, safe_serialization=True)
    return str(folder)


def test_sega_study_on_two_workers_reports_what_one_process_does(workers, tmp_path):
    from dataclasses import replace

    from test_eval_sega import TINY, tiny_oracle, tiny_pipe

    from segakit.eval.sega_study import run_study
    from segakit.sega.pipeline import SegaPipeline

    model = _save(tiny_pipe(tmp_path / "parts"), tmp_path / "model")
    pipe = SegaPipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    oracle = tiny_oracle()
    cfg = replace(TINY, sweep=(0, 4, 8), unique_prompts=TINY.unique_prompts[:2], grid_strengths=(0, 8))  # smaller still
    here, _ = run_study(pipe, oracle, cfg, tmp_path / "here", "x", model_name=model)
    there, _ = run_study(
        pipe, oracle, cfg, tmp_path / "there", "x", model_name=model, runner=CallRunner(workers, model)
    )
    assert there["run"]["units_from_cache"] == 0 and there["run"]["images"] == here["run"]["images"]
    assert json.dumps(there["results"], sort_keys=True) == json.dumps(here["results"], sort_keys=True)
    for a, b in zip(
        sorted((tmp_path / "here" / "cache").glob("*.npz")), sorted((tmp_path / "there" / "cache").glob("*.npz"))
    ):
        assert a.name == b.name  # the same units under the same keys, with the same arrays
        with np.load(a) as x, np.load(b) as y:
            assert all(np.array_equal(x[k], y[k]) for k in x.files if k != "_compute_s")


def test_directions_study_on_two_workers_makes_the_images_of_one_process(workers, tmp_path):
    from cli_runner import sd_folder
    from test_eval_directions import NAMES

    from segakit.core.fingerprint import fingerprint
    from segakit.core.hooks import mid_block_shape
    from segakit.directions import Direction
    from segakit.directions.library import Library
    from segakit.eval.directions_study import DirectionsStudyConfig
    from segakit.eval.directions_study.config import PLAIN, fair_arms, safety_arms
    from segakit.eval.directions_study.render import Bench
    from segakit.eval.directions_study.run import Study
    from segakit.sega.pipeline import SegaPipeline
    from segakit.world.oracle import Oracle, OracleNet

    model = str(sd_folder(tmp_path))
    pipe = SegaPipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    shape = mid_block_shape(pipe.unet, size, size, pipe.vae_scale_factor)
    (tmp_path / "lib").mkdir()
    files = {}
    for k, name in enumerate(NAMES):
        d = Direction(
            torch.randn(shape, generator=torch.Generator().manual_seed(k)), name, {"unet": fingerprint(pipe.unet)}
        )
        files[name] = d.save(tmp_path / "lib" / f"{name.replace('=', '-')}.safetensors").name
    (tmp_path / "lib" / "library.json").write_text(json.dumps({"directions": files, "strength": 0.5}))
    library = Library.load(tmp_path / "lib")
    torch.manual_seed(0)
    oracle = Oracle(OracleNet())
    cfg = DirectionsStudyConfig(
        seeds=3, first_seed=5, steps=2, batch=2, sweep_seeds=2, sweep_strengths=(0.0, 1.0)
    ).check()
    here = Study(Bench(pipe, library, cfg), oracle)
    there = Study(Bench(pipe, library, cfg), oracle, runner=CallRunner(workers, model))

    # every kind of arm: plain, directions at a strength, both fair methods, SLD, negative prompt, SEGA reverse edit
    arms = [PLAIN, *fair_arms("presentation"), *safety_arms()]
    for arm in dict.fromkeys(arms):
        for strength in [None, 1.0] if arm.kind == "directions" else [None]:
            a, b = here.shot(arm, "a doctor", strength=strength), there.shot(arm, "a doctor", strength=strength)
            assert torch.equal(a.images, b.images), arm.name
            assert a.labels == b.labels and b.seconds > 0


def test_editing_study_on_two_workers_edits_what_one_process_does(workers, tmp_path):
    from pathlib import Path

    from segakit.core.loading import resolve
    from segakit.editing.pipeline import EditPipeline
    from segakit.eval.editing_study import EditingStudy, EditingStudyConfig, Methods
    from segakit.eval.editing_study.metrics import ClipScorer
    from segakit.world.oracle import Oracle

    pipe, oracle = EditPipeline.from_pretrained("embedded"), Oracle.load()
    clip = ClipScorer.from_folder(Path(resolve("embedded")) / "clip")
    cfg = EditingStudyConfig(pairs=2, sessions=1, turns=2, steps=2, methods=("sega", "regenerate"), figure_rows=1)
    here = EditingStudy(Methods(pipe, cfg), oracle, clip, cfg, tmp_path / "here").run()
    there = EditingStudy(
        Methods(pipe, cfg),
        oracle,
        clip,
        cfg,
        tmp_path / "there",
        runner=CallRunner(workers, "embedded"),
        model_name="embedded",
    ).run()
    assert there["run"]["edits"] == here["run"]["edits"] == 2 * (2 + 2) and there["run"]["edits_from_cache"] == 0

    def measured(rows):  # everything but the wall times
        return [{k: v for k, v in r.items() if k not in ("seconds", "stages")} for r in rows]

    assert measured(there["records"]) == measured(here["records"])
    a, b = sorted((tmp_path / "here").glob("*.npz")), sorted((tmp_path / "there").glob("*.npz"))
    assert [x.name for x in a] == [y.name for y in b] and len(a) == 8  # the same edits under the same keys
    for x, y in zip(a, b):
        with np.load(x) as u, np.load(y) as v:
            assert np.array_equal(u["image"], v["image"])  # turn 2 of the session edited the worker's own turn 1


def test_direction_learner_with_workers_learns_what_one_process_does(workers, tmp_path):
    from cli_runner import sd_folder

    from segakit.directions import LearnConfig, learn_direction
    from segakit.directions.learn import shards_on
    from segakit.sega.pipeline import SegaPipeline

    model = str(sd_folder(tmp_path))
    pipe = SegaPipeline.from_pretrained(model)
    cfg = LearnConfig(
        name="x", positive="a face with glasses", neutral="a face", images=5, steps=4, batch=2, gen_steps=2, gen_batch=2
    )
    here = learn_direction(pipe, cfg, tmp_path / "here")
    runner = CallRunner(workers, model)
    made = []

    def make_shards(todo):
        made.extend(todo)
        yield from shards_on(runner.imap, cfg)(todo)

    there = learn_direction(pipe, cfg, tmp_path / "there", make_shards=make_shards)
    assert made == [(0, 2), (2, 2), (4, 1)]  # the shards of one process: the cache files are the same
    assert sorted(p.name for p in (tmp_path / "there").rglob("*.safetensors")) == sorted(
        p.name for p in (tmp_path / "here").rglob("*.safetensors")
    )
    assert torch.equal(there.vector, here.vector)


@pytest.mark.slow  # about 11 s more (the killed workers are replaced): the file stays near a minute without it
def test_an_interrupted_map_leaves_the_workers_ready_for_the_next(workers, tmp_path):
    from cli_runner import sd_folder

    from segakit.directions import LearnConfig
    from segakit.directions.learn import shard_latents

    model = str(sd_folder(tmp_path))
    cfg = LearnConfig(name="x", positive="a face", images=6, gen_steps=1, gen_batch=1)
    runner = CallRunner(workers, model)
    args = [(cfg, i, 1) for i in range(6)]

    def stop(_):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.map(shard_latents, args, stop)
    again = runner.map(shard_latents, args)  # nothing of the interrupted map comes back here
    assert [r.index for r in again] == list(range(6))
    reference = CallRunner(InProcess(WorkerConfig(threads=1)), model).map(shard_latents, args)
    assert all(torch.equal(a.value, b.value) for a, b in zip(again, reference))


@pytest.mark.parametrize(
    "command", [["eval", "sega"], ["eval", "directions"], ["directions", "learn", "x", "--positive", "a face"]]
)
def test_worker_options_are_refused_in_one_sentence_before_anything_loads(
    command, monkeypatch, capsys, tmp_path, hide_ray
):
    from cli_runner import cli

    out = ["--out", tmp_path / ("x.safetensors" if command[0] == "directions" else "r")]
    code, _, err = cli(monkeypatch, capsys, *command, *out, "--workers", "0")
    assert code == 2 and "--workers 0 is below 1; use 1 or more." in err and "Traceback" not in err
    hide_ray()
    code, _, err = cli(monkeypatch, capsys, *command, *out, "--ray", "auto")
    assert (
        code == 2
        and err.strip()
        == "error: --ray needs Ray, which is not installed here; install it with pip install 'segakit[ray]'."
    )
    assert not list(tmp_path.iterdir())
