"""The batch runner's throughput on this machine: jobs per second for one process, N local workers and Ray with
N actors on the same embedded-model jobs, and the cost per job of batching vs one job per pipeline call.

Each mode runs the whole JOBS set into its own empty folder (worker start-up and model loading included in the
wall time, after one untimed warm-up run) and the script checks that every mode wrote the same bytes. The overhead of the runner itself is the
wall time per job minus the generation time the workers report for it (results.jsonl ``seconds``).

    python benchmarks/batch_scale.py --jobs 256 --steps 4 --out out/batch-scale      # docs/scale.md
    python benchmarks/batch_scale.py --jobs 16 --steps 2 --modes one,workers --out /tmp/bs   # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
warnings.filterwarnings("ignore")

from segakit.jobs.jobfile import parse_jobs  # noqa: E402
from segakit.jobs.local import InProcess, LocalWorkers  # noqa: E402
from segakit.jobs.runner import run_jobs  # noqa: E402
from segakit.jobs.worker import WorkerConfig  # noqa: E402

PROMPTS = ["a face of a man", "a face of a woman", "a smiling face", "a face with glasses"]


def job_lines(n: int, steps: int) -> list[dict]:
    """``n`` jobs: four prompts, one seed each, a quarter of them with one edit."""
    return [
        {"prompt": PROMPTS[i % 4], "seed": i, "steps": steps, **({"edits": ["+hat:w=1"]} if i % 4 == 3 else {})}
        for i in range(n)
    ]


def timed(name: str, jobs, folder: Path, make, batch_size: int) -> dict:
    shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    executor = make()
    try:
        summary = run_jobs(jobs, folder, executor, batch_size=batch_size)
    finally:
        executor.close()
    wall = time.perf_counter() - start
    assert summary.written == len(jobs) and not summary.failed, summary
    entries = [json.loads(x) for x in (folder / "results.jsonl").read_text().splitlines()]
    generating = sum(e["seconds"] for e in entries)
    row = {"mode": name, "batch_size": batch_size, "jobs": len(jobs), "wall_s": round(wall, 2),
           "jobs_per_s": round(len(jobs) / wall, 3), "generation_s_per_job": round(generating / len(jobs), 4)}  # fmt: skip
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=256)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2, help="local workers and Ray actors")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--modes", default="one,workers,ray,unbatched", help="which of one, workers, ray, unbatched to run")
    ap.add_argument("--out", type=Path, default=Path("out/batch-scale"))
    args = ap.parse_args()
    modes = args.modes.split(",")
    jobs, bad = parse_jobs("\n".join(json.dumps(x) for x in job_lines(args.jobs, args.steps)))
    assert not bad
    cores = os.cpu_count() or 1
    # warm the disk cache and the kernels once, so the first mode timed does not pay for everyone
    timed("warm-up (not reported)", jobs[:8], args.out / "warm-up", lambda: InProcess(WorkerConfig()), args.batch_size)
    rows = []
    if "one" in modes:
        rows.append(timed("1 process", jobs, args.out / "one", lambda: InProcess(WorkerConfig()), args.batch_size))
    if "workers" in modes:
        make = lambda: LocalWorkers(args.workers, WorkerConfig())  # noqa: E731
        rows.append(timed(f"{args.workers} local workers", jobs, args.out / "workers", make, args.batch_size))
    if "ray" in modes:
        import ray

        from segakit.jobs.ray_actors import RayActors, connect

        started_at = time.perf_counter()
        connect("local", cpus=args.workers)
        ray_start = time.perf_counter() - started_at
        rows.append(
            timed(
                f"Ray, {args.workers} actors",
                jobs,
                args.out / "ray",
                lambda: RayActors(args.workers, WorkerConfig()),
                args.batch_size,
            )
        )
        rows[-1]["ray_init_s_not_counted"] = round(ray_start, 2)
        ray.shutdown()
    if "unbatched" in modes:
        rows.append(
            timed("1 process, one job per call", jobs, args.out / "unbatched", lambda: InProcess(WorkerConfig()), 1)
        )
    batched = [r for r in rows if r["batch_size"] == args.batch_size]
    folders = {
        r["mode"]: args.out / {"1 process": "one", f"{args.workers} local workers": "workers"}.get(r["mode"], "ray")
        for r in batched
    }
    contents = {m: {p.name: p.read_bytes() for p in f.glob("*.png")} for m, f in folders.items()}
    same = len({json.dumps(sorted((k, hash(v)) for k, v in c.items())) for c in contents.values()}) <= 1
    base = next((r for r in rows if r["mode"] == "1 process"), None)
    for r in rows:
        r["ratio_to_1_process"] = round(r["jobs_per_s"] / base["jobs_per_s"], 2) if base else None
        r["runner_overhead_s_per_job"] = (
            round(r["wall_s"] / r["jobs"] - r["generation_s_per_job"], 4) if r["mode"].startswith("1 process") else None
        )
    summary = {
        "jobs": args.jobs,
        "steps": args.steps,
        "cores": cores,
        "load_average": os.getloadavg(),
        "same_bytes_in_every_batched_mode": same,
        "rows": rows,
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    assert same, "the modes wrote different bytes"


if __name__ == "__main__":
    main()
