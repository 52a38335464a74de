"""The batch runner: jobs in, one PNG per job (``OUT/<job id>.png``) and ``OUT/results.jsonl`` out.

    jobs, bad = read_jobs("jobs.jsonl")       # bad: the lines that made no job, with their sentences
    executor = InProcess()                    # or LocalWorkers(2), or RayActors(2) after connect("auto")
    summary = run_jobs(jobs, Path("out"), executor)

Resuming: a job whose PNG is already in OUT, complete (it decodes to its last row and ends with PNG's end
chunk) and carrying this job's parameters, is skipped; anything else at its name is run again and replaced.
PNGs are written only here, by the process that started the run, each atomically, so a half-written file
never exists under a job's name and no file is written twice. Every executor runs the same batches
(:func:`segakit.jobs.batching.plan`), so the bytes do not depend on where the jobs ran.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from segakit.core.atomic import atomic_open, ensure_writable_dir
from segakit.core.images import complete_png_params
from segakit.jobs import results
from segakit.jobs.batching import DEFAULT_BATCH_SIZE, DEFAULT_MAX_ROWS, plan
from segakit.jobs.jobfile import Job, params_id


@dataclass
class Summary:
    """What a run did: PNGs written, jobs skipped as already done, jobs that failed (with their sentence)."""

    written: int = 0
    skipped: int = 0
    failed: list[tuple[Job, str]] = field(default_factory=list)
    seconds: float = 0.0
    results: Path | None = None


def is_done(out: Path, job: Job) -> bool:
    """``OUT/<id>.png`` is complete and carries this job's parameters."""
    meta = complete_png_params(out / job.file)
    return meta is not None and params_id(meta) == job.id


def _remove_leftovers(out: Path, jobs: list[Job]) -> None:
    """Temporary files of an atomic write that a killed process never renamed (``.<id>.png.*.tmp``)."""
    ids = {j.file for j in jobs}
    for tmp in out.glob(".*.png.*.tmp"):
        if tmp.name[1:].split(".png.")[0] + ".png" in ids:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def _entry(job: Job, **extra) -> dict:
    return {"id": job.id, "line": job.line, **extra}


def run_jobs(jobs: list[Job], out: Path, executor, batch_size: int = DEFAULT_BATCH_SIZE,
             max_rows: int = DEFAULT_MAX_ROWS, classify: bool = False,
             progress: Callable[[int], None] | None = None) -> Summary:  # fmt: skip
    """Run the jobs not yet done in ``out`` on ``executor``; ``progress(k)`` after every k jobs finished."""
    start = time.perf_counter()
    out = ensure_writable_dir(Path(out))
    _remove_leftovers(out, jobs)
    by_id = {j.id: j for j in jobs}
    done = {j.id for j in jobs if is_done(out, j)}
    summary = Summary(skipped=len(done), results=out / results.NAME)
    prior = results.read(summary.results)
    kept = {i: e for i, e in prior.items() if i in done or (i not in by_id and (out / f"{i}.png").is_file())}
    for i in done:
        kept.setdefault(i, _entry(by_id[i], file=by_id[i].file, seconds=None, batch=None))
    results.write(summary.results, list(kept.values()))  # a line cut short by a crash goes here
    if progress and done:
        progress(len(done))
    todo = [b for b in plan(jobs, batch_size, max_rows) if any(i not in done for i in b.ids)]
    journal = results.Journal(summary.results)
    entries = dict(kept)
    try:
        for rendered in executor.run(todo):
            for r in rendered:
                job = by_id[r.id]
                if r.id in done:  # a batch that held jobs finished earlier: their PNGs stay as they are
                    continue
                if r.error is not None:
                    entry = _entry(job, error=r.error)
                    summary.failed.append((job, r.error))
                else:
                    with atomic_open(out / job.file, "wb") as fh:
                        fh.write(r.png)
                    done.add(r.id)
                    summary.written += 1
                    entry = _entry(job, file=job.file, seconds=round(r.seconds, 4), batch=r.batch)
                    if r.oracle is not None:
                        entry["oracle"] = r.oracle
                entries[r.id] = entry
                journal.add(entry)
                if progress:
                    progress(1)
        if classify:
            _classify_earlier(out, jobs, entries)
    finally:
        journal.close()
        _remove_leftovers(out, jobs)
        order = [entries[j.id] for j in jobs if j.id in entries] + [e for i, e in entries.items() if i not in by_id]
        results.write(summary.results, order)
    summary.seconds = time.perf_counter() - start
    return summary


def _classify_earlier(out: Path, jobs: list[Job], entries: dict[str, dict]) -> None:
    """The oracle's reading for PNGs written by an earlier run without ``--classify``."""
    missing = [j for j in jobs if j.id in entries and "file" in entries[j.id] and "oracle" not in entries[j.id]]
    if not missing:
        return
    from PIL import Image

    from segakit.world.oracle import Oracle

    oracle = Oracle.load()
    for first in range(0, len(missing), 256):
        chunk = missing[first : first + 256]
        images = []
        for j in chunk:
            with Image.open(out / j.file) as im:
                images.append(im.convert("RGB"))
        for j, reading in zip(chunk, oracle.predict(images)):
            entries[j.id]["oracle"] = reading
