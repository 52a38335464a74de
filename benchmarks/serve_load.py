"""Load test of `segakit serve`: many concurrent clients with small jobs, against 127.0.0.1 only, bounded.

    python benchmarks/serve_load.py --clients 50 --duration 60 --out out/serve_load.json
    python benchmarks/serve_load.py --clients 50 --duration 60 --max-batch-rows 1,32   # alone vs batched, side by side

Starts `segakit serve` (embedded model) as a child process on a free port of 127.0.0.1, warms it up, then runs
--clients threads for --duration seconds (and at most --max-requests requests in all). Each client posts a
small generation drawn from a fixed set of parameters (prompts x concepts x seeds, --steps steps) and, on 429,
waits the Retry-After it is given. Afterwards every image received is compared, pixel for pixel, with a direct
call (``segakit.jobs.generate.render`` in this process) on the parameters the client *sent*: a lost or mixed-up
result shows as a mismatch (an image run in a shared call may differ by the batch tolerance, one level of 255 per
pixel value; the report counts the bit-identical ones too). With several --max-batch-rows the same load runs
against one fresh server per setting, one after the other, and the throughputs are compared. Reports requests served, p50/p95 latency, 429s, other errors, mismatches, and the
server's resident memory at rest before and after the load (bounded by --max-growth-mb) and its peak while
serving, sampled every second.
"""

from __future__ import annotations

import argparse
import base64
import io
import itertools
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import requests  # noqa: E402

HOST = "127.0.0.1"  # never anything else
PROMPTS = ["a face of a person", "a portrait of a woman", "a man with short hair"]
EDITS = [[], ["+glasses"], ["-beard:s=6"], ["+smile:s=8,w=1", "+hat"]]
SEEDS = [0, 1]
# a request run in a shared call may differ from the request alone by this much per pixel value (0-255): the
# denoiser's batch changes float32's last bits (docs/scale.md, batch invariance; docs/serving.md, batching)
BATCH_TOLERANCE = 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def jobs(steps: int) -> list[dict]:
    return [
        {"prompt": p, "edits": e, "seed": s, "steps": steps} for p, e, s in itertools.product(PROMPTS, EDITS, SEEDS)
    ]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def pixels(png: bytes):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def load(args, batch_rows: int | None) -> tuple[dict, list]:
    """One server under load: the measurements, and every image received as (table index, seed, prompt, pixels)."""
    port = free_port()
    url = f"http://{HOST}:{port}"
    cmd = [sys.executable, "-m", "segakit", "serve", "--host", HOST, "--port", str(port),
           "--threads", str(args.threads), "--log-level", "warning"]  # fmt: skip
    if args.max_queue is not None:
        cmd += ["--max-queue", str(args.max_queue)]
    if batch_rows is not None:  # left out, the server's default (and a server from before batching runs at all)
        cmd += ["--max-batch-rows", str(batch_rows)]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"{url}/api/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                print(server.stderr.read() if server.stderr else "", file=sys.stderr)
                raise SystemExit("the server did not start")
            time.sleep(0.2)
        table = jobs(args.steps)
        health = requests.get(f"{url}/api/health", timeout=10).json()
        for body in table[:4]:  # warm-up: first calls allocate what later ones reuse
            requests.post(f"{url}/api/generate", json=body, timeout=120).raise_for_status()
        # and two bursts of a full queue of concurrent requests, so that the shared calls' larger batches are
        # allocated before memory is read
        for _ in range(2):
            burst = [threading.Thread(target=requests.post, args=(f"{url}/api/generate",), kwargs={"json": body, "timeout": 120})
                     for body in (table * 2)[: health["queue"]["max"]]]  # fmt: skip
            for t in burst:
                t.start()
            for t in burst:
                t.join()
        load_before = os.getloadavg()[0]
        mem_before = rss_mb(server.pid)
        peak = [mem_before]
        stop = threading.Event()

        def sample():
            while not stop.wait(1.0):
                peak.append(rss_mb(server.pid))

        threading.Thread(target=sample, daemon=True).start()
        lock = threading.Lock()
        sent = itertools.count()
        ok_lat, busy_lat, errors, received = [], [], [], []
        busy = 0
        end = time.monotonic() + args.duration

        def client(i: int) -> None:
            nonlocal busy
            rng = random.Random(i)
            session = requests.Session()
            while time.monotonic() < end:
                if next(sent) >= args.max_requests:
                    return
                k = rng.randrange(len(table))
                t0 = time.monotonic()
                try:
                    r = session.post(f"{url}/api/generate", json=table[k], timeout=120)
                except requests.RequestException as exc:
                    with lock:
                        errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                dt = time.monotonic() - t0
                if r.status_code == 200:
                    out = r.json()["images"][0]
                    with lock:
                        ok_lat.append(dt)
                        received.append((k, out["seed"], out["parameters"]["prompt"], base64.b64decode(out["png"])))
                elif r.status_code == 429:
                    with lock:
                        busy += 1
                        busy_lat.append(dt)
                    time.sleep(min(float(r.headers.get("Retry-After", "1")), max(0.0, end - time.monotonic())))
                else:
                    with lock:
                        errors.append(f"{r.status_code}: {r.text[:200]}")

        t_start = time.monotonic()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - t_start
        stop.set()
        time.sleep(1.0)
        mem_after = rss_mb(server.pid)
        health = requests.get(f"{url}/api/health", timeout=10).json()
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    result = {
        "max_batch_rows": health["limits"].get("max_batch_rows", "none: a server from before batching"),
        "max_queue": health["queue"]["max"],
        "wall_s": round(wall, 1), "load_average_1m_before": round(load_before, 2),
        "load_average_1m_after": round(os.getloadavg()[0], 2),
        "served": len(ok_lat), "throughput_per_s": round(len(ok_lat) / wall, 2),
        "p50_s": round(percentile(ok_lat, 0.5), 3), "p95_s": round(percentile(ok_lat, 0.95), 3),
        "max_s": round(max(ok_lat, default=float("nan")), 3),
        "rejected_429": busy, "p50_429_s": round(percentile(busy_lat, 0.5), 3), "errors": len(errors),
        "error_examples": errors[:5],
        "rss_mb_before": round(mem_before, 1), "rss_mb_after": round(mem_after, 1), "rss_mb_peak": round(max(peak), 1),
        "rss_growth_bound_mb": args.max_growth_mb, "rss_within_bound": mem_after - mem_before <= args.max_growth_mb,
        "server_counts": {k: health[k] for k in ("served", "failed", "cancelled", "rejected_busy")},
    }  # fmt: skip
    if "calls" in health:
        result["server_counts"]["calls"] = health["calls"]
        result["mean_batch"] = round(health["served"] / max(1, health["calls"]), 2)
    return result, received


def check(received: list, expected: dict, tolerance: int) -> dict:
    """Every received image against the direct call: bit-identical, within ``tolerance`` (0-255 levels), or not."""
    table = jobs(0)
    diffs, mismatched = [], 0
    for k, seed, prompt, png in received:
        d = int(abs(pixels(png) - expected[k]).max())
        diffs.append(d)
        mismatched += d > tolerance or seed != table[k]["seed"] or prompt != table[k]["prompt"]
    return {"mismatched": mismatched, "bit_identical": sum(d == 0 for d in diffs),
            "max_pixel_difference": max(diffs, default=0), "distinct_jobs_checked": len(expected)}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    ap.add_argument("--max-requests", type=int, default=20000, help="bound on requests in all")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--max-queue", type=int, default=None, help="the server's --max-queue (default: the server's)")
    ap.add_argument("--max-batch-rows", default=None,
                    help="the server's --max-batch-rows; several, comma-separated (1,32), run one after the other "
                         "under the same load and are compared (1: every request alone, as before batching)")  # fmt: skip
    ap.add_argument("--tolerance", type=int, default=BATCH_TOLERANCE,
                    help="largest difference of a pixel value (0-255) from the request alone that still matches")  # fmt: skip
    ap.add_argument("--threads", type=int, default=1, help="the server's torch threads")
    ap.add_argument(
        "--max-growth-mb",
        type=float,
        default=50.0,
        help="fail if the server's memory at rest after the load exceeds that after the warm-up by more than this "
        "(the peak, sampled every second, is reported: it holds the running call's working set)",
    )
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    if not (1 <= args.clients <= 200 and 1 <= args.duration <= 900 and args.max_requests >= 1):
        ap.error("bounds: 1-200 clients, 1-900 s, at least one request")
    try:
        settings = [None] if args.max_batch_rows is None else [int(x) for x in args.max_batch_rows.split(",")]
    except ValueError:
        ap.error(f"--max-batch-rows {args.max_batch_rows!r} is not whole numbers separated by commas, such as 1,32")
    runs = [load(args, rows) for rows in settings]

    # every received image against a direct call on the parameters the client sent, in this process
    import torch

    from segakit.core.images import png_bytes
    from segakit.directions.library import Library
    from segakit.jobs.generate import render
    from segakit.sega.pipeline import SegaPipeline
    from segakit.serve.config import Limits
    from segakit.serve.schema import GenerateRequest, to_params

    torch.set_num_threads(args.threads)
    pipe = SegaPipeline.from_pretrained("embedded")
    table = jobs(args.steps)
    expected = {}
    for k in sorted({k for _, received in runs for k, *_ in received}):
        params = to_params(GenerateRequest(**table[k]), "embedded", Limits(), Library.load())
        done = render(params, pipe)
        expected[k] = pixels(png_bytes(done.images[0], done.params[0]))
    results = [{**measured, **check(received, expected, args.tolerance)} for measured, received in runs]
    summary = {
        "command": " ".join(["python", "benchmarks/serve_load.py", *sys.argv[1:]]),
        "clients": args.clients, "duration_s": args.duration, "steps": args.steps,
        "server_threads": args.threads, "cpus": os.cpu_count(), "tolerance": args.tolerance, "runs": results,
    }  # fmt: skip
    if len(results) > 1:
        first = results[0]["throughput_per_s"]
        summary["throughput_ratio_to_first"] = [
            round(r["throughput_per_s"] / first, 2) if first else None for r in results
        ]
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    bad = any(r["errors"] or r["mismatched"] or not r["rss_within_bound"] for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
