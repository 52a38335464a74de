"""`segakit batch`: the JOBS file (normalising, job ids, one sentence per bad line), the batch plan, resuming,
and the same bytes from one process, two local workers and one job per call vs `segakit generate`."""

import json

import pytest
from cli_runner import cli

from segakit.core.images import read_params
from segakit.jobs.batching import Batch, plan
from segakit.jobs.jobfile import job_id, parse_jobs
from segakit.jobs.local import InProcess, LocalWorkers
from segakit.jobs.runner import run_jobs
from segakit.jobs.worker import WorkerConfig
from segakit.sega.defaults import EMBEDDED_EDIT

STEPS = 3


def _lines(*objects) -> str:
    return "\n".join(o if isinstance(o, str) else json.dumps(o) for o in objects) + "\n"


def _jobs_file(tmp_path, n=6, name="jobs.jsonl"):
    """``n`` small embedded-model jobs in two batch groups (with and without an edit)."""
    lines = [{"prompt": f"a face of a {'woman' if i % 2 else 'man'}", "seed": i, "steps": STEPS,
              **({"edits": ["+glasses:w=1"]} if i % 3 == 0 else {})} for i in range(n)]  # fmt: skip
    path = tmp_path / name
    path.write_text(_lines(*lines))
    return path


def _pngs(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


# ------------------------------------------------------------------------------------------- JOBS file
def test_same_job_written_two_ways_has_one_id_and_defaults_filled():
    jobs, bad = parse_jobs(_lines(
        {"prompt": "a face", "seed": 2, "edits": ["+glasses"]},
        {"prompt": "a face", "seed": 2.0, "steps": 25, "model": "embedded",
         "edits": [{"prompt": "glasses", "scale": int(EMBEDDED_EDIT.scale), "threshold": EMBEDDED_EDIT.threshold, "warmup": 5}]},
        {"prompt": "a face", "seed": 3, "edits": ["+glasses"]},
    ))  # fmt: skip
    assert bad == []
    assert [j.line for j in jobs] == [1, 3]  # line 2 is line 1's job again: it runs once
    edit = jobs[0].params.edits[0]
    assert (edit.scale, edit.threshold, edit.warmup, jobs[0].params.steps) == (
        EMBEDDED_EDIT.scale,
        EMBEDDED_EDIT.threshold,
        EMBEDDED_EDIT.warmup,
        25,
    )
    assert jobs[0].id != jobs[1].id and len(jobs[0].id) == 16 and jobs[0].id == job_id(jobs[0].params)


def test_num_images_expands_to_one_job_per_seed():
    jobs, _ = parse_jobs(_lines({"prompt": "a face", "seed": 10, "num_images": 3}))
    assert [(j.params.seed, j.params.num_images, j.line) for j in jobs] == [(10, 1, 1), (11, 1, 1), (12, 1, 1)]


@pytest.mark.parametrize(
    "line, words",
    [
        ('{"prompt": "a face", "seed": 1', "not valid JSON"),
        ('["a face"]', "not an object"),
        ('{"prompt": "a face", "promt": "x"}', "unknown field 'promt'"),
        ('{"prompt": "a face", "sweep": [0, 2]}', "sweep renders a strip"),
        ('{"seed": 1}', 'no "prompt" field'),
        ('{"prompt": "a face", "model": "no such model"}', "'no such model' is neither a local folder"),
        ('{"prompt": "a face", "edits": ["+glasses:q=3"]}', "unknown key 'q'"),
        ('{"prompt": "a face", "edits": [{"prompt": "glasses", "size": 3}]}', "unknown field 'size'"),
        ('{"prompt": "a face", "seed": "seven"}', "seed 'seven' is not a whole number"),
        ('{"prompt": "a face", "steps": 0}', "steps 0 is below 1"),
        ('{"prompt": "a face", "guidance": "high"}', "guidance 'high' is not a finite number"),
    ],
)
def test_bad_line_gets_one_sentence_with_its_number(line, words):
    jobs, bad = parse_jobs(_lines({"prompt": "a face", "seed": 0}, line, {"prompt": "a face", "seed": 1}))
    assert [j.line for j in jobs] == [1, 3]  # the valid lines still make jobs
    assert len(bad) == 1 and bad[0].line == 2
    sentence = bad[0].sentence("jobs.jsonl")
    assert sentence.startswith("jobs.jsonl line 2: ") and words in sentence and "\n" not in sentence


# ----------------------------------------------------------------------------------------------- plan
def test_plan_groups_by_shared_fields_caps_size_and_rows_and_ignores_the_executor():
    jobs, _ = parse_jobs(_lines(
        *({"prompt": f"p{i}", "seed": i, "steps": 4} for i in range(5)),
        *({"prompt": f"q{i}", "seed": i, "steps": 4, "edits": ["+glasses", "+hat"]} for i in range(5)),
        {"prompt": "p", "seed": 9, "steps": 5},
        {"prompt": "p", "seed": 9, "steps": 4, "fair": "presentation"},
        {"prompt": "p", "seed": 10, "steps": 4, "fair": "presentation"},
    ))  # fmt: skip
    batches = plan(jobs, batch_size=3, max_rows=8)
    sizes = [[j.line for j in b.jobs] for b in batches]
    # no edits: 3 per batch; two edits: 4 rows per image, so 2 per batch; other steps apart; fair alone
    assert sizes == [[1, 2, 3], [4, 5], [6, 7], [8, 9], [10], [11], [12], [13]]
    assert all(isinstance(b, Batch) for b in batches) and batches == plan(jobs, batch_size=3, max_rows=8)
    appended = plan(jobs + parse_jobs(_lines({"prompt": "p9", "seed": 99, "steps": 4}))[0], batch_size=3, max_rows=8)
    assert appended[0] == batches[0]  # appending a line changes only its group's last batch


# ------------------------------------------------------------------------------------------ the runner
def test_cli_runs_valid_lines_reports_bad_ones_and_strict_runs_nothing(monkeypatch, capsys, tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(
        _lines(
            {"prompt": "a face", "seed": 0, "steps": 2},
            "{oops",
            {"prompt": "a face", "seed": 1, "steps": 2, "colour": 1},
        )
    )
    code, _, err = cli(monkeypatch, capsys, "batch", jobs, "--out", tmp_path / "strict", "--strict")
    assert (
        code == 2 and "jobs.jsonl line 2: not valid JSON" in err and "jobs.jsonl line 3: unknown field 'colour'" in err
    )
    assert "nothing ran" in err and not list((tmp_path / "strict").glob("*"))
    code, out, err = cli(monkeypatch, capsys, "batch", jobs, "--out", tmp_path / "run", "--classify")
    assert code == 2 and "Traceback" not in err
    assert len(_pngs(tmp_path / "run")) == 1 and "1 written" in out and "2 bad lines" in out
    [entry] = [json.loads(x) for x in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert entry["line"] == 1 and entry["file"] == f"{entry['id']}.png" and entry["seconds"] > 0
    assert entry["oracle"]["presentation"] in ("man", "woman")
    params = read_params(tmp_path / "run" / entry["file"])
    assert params["prompt"] == "a face" and params["seed"] == 0 and params["num_images"] == 1


def test_cli_refuses_bad_options_in_one_sentence(monkeypatch, capsys, tmp_path):
    jobs = _jobs_file(tmp_path, 1)
    code, _, err = cli(monkeypatch, capsys, "batch", jobs, "--workers", 0)
    assert code == 2 and "--workers 0 is below 1" in err
    code, _, err = cli(monkeypatch, capsys, "batch", tmp_path / "missing.jsonl")
    assert code == 2 and "does not exist" in err


def test_resume_skips_complete_pngs_and_redoes_half_written_ones(tmp_path):
    jobs, _ = parse_jobs(_jobs_file(tmp_path).read_text())
    executor = InProcess(WorkerConfig(threads=1))
    first = run_jobs(jobs, tmp_path / "out", executor, batch_size=4)
    assert first.written == len(jobs) and not first.failed
    reference = _pngs(tmp_path / "out")
    cut, stale = tmp_path / "out" / jobs[1].file, tmp_path / "out" / jobs[4].file
    cut.write_bytes(reference[cut.name][: len(reference[cut.name]) // 2])  # a file cut short
    stale.write_bytes(reference[jobs[0].file])  # a complete PNG, but another job's
    (tmp_path / "out" / f".{jobs[2].file}.abc.tmp").write_bytes(b"half")  # an atomic write that never finished
    with open(tmp_path / "out" / "results.jsonl", "a") as fh:
        fh.write('{"id": "unfinished')  # a results line cut short
    ran = []
    again = run_jobs(jobs, tmp_path / "out", executor, batch_size=4, progress=ran.append)
    assert (again.written, again.skipped) == (2, len(jobs) - 2) and sum(ran) == len(jobs)
    assert _pngs(tmp_path / "out") == reference  # rerun batches write the same bytes
    assert not list((tmp_path / "out").glob(".*.tmp"))
    entries = [json.loads(x) for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert [e["id"] for e in entries] == [j.id for j in jobs]
    third = run_jobs(jobs, tmp_path / "out", executor, batch_size=4)
    assert (third.written, third.skipped) == (0, len(jobs))


def test_two_local_workers_write_the_bytes_of_one_process(tmp_path):
    jobs, _ = parse_jobs(_jobs_file(tmp_path, 8).read_text())
    run_jobs(jobs, tmp_path / "one", InProcess(WorkerConfig(threads=1)), batch_size=2)
    workers = LocalWorkers(2, WorkerConfig(threads=1))
    try:
        summary = run_jobs(jobs, tmp_path / "two", workers, batch_size=2)
    finally:
        workers.close()
    assert summary.written == 8
    one, two = _pngs(tmp_path / "one"), _pngs(tmp_path / "two")
    assert len(one) == 8 and one == two


def test_killed_local_worker_has_its_batch_rerun_and_every_png_written_once(tmp_path):
    import os
    import signal

    jobs, _ = parse_jobs(_jobs_file(tmp_path, 8).read_text())
    run_jobs(jobs, tmp_path / "one", InProcess(WorkerConfig(threads=1)), batch_size=2)
    workers = LocalWorkers(2, WorkerConfig(threads=1))
    killed = []

    def kill_a_busy_worker(_):
        if not killed and workers.in_flight():
            killed.append(workers.in_flight()[0])
            os.kill(killed[0], signal.SIGKILL)

    try:
        summary = run_jobs(jobs, tmp_path / "two", workers, batch_size=2, progress=kill_a_busy_worker)
        alive = [p.pid for p in workers.procs]
    finally:
        workers.close()
    assert killed and workers.retried >= 1 and killed[0] not in alive  # a fresh process took the dead one's place
    assert summary.written == 8 and not summary.failed
    files = sorted(p.name for p in (tmp_path / "two").iterdir())
    assert files == sorted([j.file for j in jobs] + ["results.jsonl"])  # each PNG once, nothing half written
    assert _pngs(tmp_path / "two") == _pngs(tmp_path / "one")
    entries = [json.loads(x) for x in (tmp_path / "two" / "results.jsonl").read_text().splitlines()]
    assert sorted(e["id"] for e in entries) == sorted(j.id for j in jobs)


def test_a_batch_whose_workers_keep_dying_fails_alone(tmp_path, monkeypatch):
    """MAX_ATTEMPTS deaths of the worker holding one batch: that batch's jobs fail with one sentence, the others run."""
    import os
    import signal

    from segakit.jobs import local

    jobs, _ = parse_jobs(_jobs_file(tmp_path, 4).read_text())
    poison = plan(jobs, batch_size=2)[0]
    real_start = local._Process.__init__
    deaths = []

    class Killer:  # the pipe to a worker process that kills the process when it is handed the poison batch
        def __init__(self, inner, pid):
            self.inner, self.pid = inner, pid

        def send(self, item):
            self.inner.send(item)
            if item == poison:
                deaths.append(self.pid)
                os.kill(self.pid, signal.SIGKILL)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    def start(self, ctx, config):
        real_start(self, ctx, config)
        self.conn = Killer(self.conn, self.process.pid)

    monkeypatch.setattr(local._Process, "__init__", start)
    workers = LocalWorkers(1, WorkerConfig(threads=1))
    try:
        summary = run_jobs(jobs, tmp_path / "out", workers, batch_size=2)
    finally:
        workers.close()
    assert len(set(deaths)) == local.MAX_ATTEMPTS  # three processes, each killed holding the batch
    assert sorted(j.id for j, _ in summary.failed) == sorted(poison.ids) and summary.written == len(jobs) - len(
        poison.ids
    )
    assert all(why == f"the worker running it died {local.MAX_ATTEMPTS} times." for _, why in summary.failed)


def test_one_job_per_call_is_byte_identical_to_segakit_generate(monkeypatch, capsys, tmp_path):
    jobs_file = tmp_path / "jobs.jsonl"
    jobs_file.write_text(_lines({"prompt": "a face of a woman", "seed": 4, "steps": STEPS, "edits": ["+glasses:s=6"]}))
    code, _, err = cli(monkeypatch, capsys, "batch", jobs_file, "--out", tmp_path / "batch", "--batch-size", 1)
    assert code == 0, err
    # the bytes depend on torch's thread count, so generate runs with the batch runner's default of one thread
    code, _, err = cli(monkeypatch, capsys, "generate", "a face of a woman", "--seed", 4, "--steps", STEPS, "--edit", "+glasses:s=6",
                       "--out", tmp_path / "gen.png", "--threads", 1)  # fmt: skip
    assert code == 0, err
    [batch_png] = _pngs(tmp_path / "batch").values()
    assert batch_png == (tmp_path / "gen.png").read_bytes()
