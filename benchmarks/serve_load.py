"""Load test of `segakit serve`: many concurrent clients with small jobs, against 127.0.0.1 only, bounded.

    python benchmarks/serve_load.py --clients 50 --duration 60 --out out/serve_load.json

Starts `segakit serve` (embedded model) as a child process on a free port of 127.0.0.1, warms it up, then runs
--clients threads for --duration seconds (and at most --max-requests requests in all). Each client posts a
small generation drawn from a fixed set of parameters (prompts x concepts x seeds, --steps steps) and, on 429,
waits the Retry-After it is given. Afterwards every image received is compared, pixel for pixel, with a direct
call (``segakit.jobs.generate.render`` in this process) on the parameters the client *sent*: a lost or mixed-up
result shows as a mismatch. Reports requests served, p50/p95 latency, 429s, other errors, mismatches, and the
server's resident memory before and after (and its peak, sampled every second).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
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


def pixels_digest(png: bytes) -> str:
    from PIL import Image

    return hashlib.sha256(Image.open(io.BytesIO(png)).convert("RGB").tobytes()).hexdigest()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    ap.add_argument("--max-requests", type=int, default=20000, help="bound on requests in all")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--max-queue", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="the server's torch threads")
    ap.add_argument(
        "--max-growth-mb", type=float, default=50.0, help="fail if the server's memory grows more than this"
    )
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    if not (1 <= args.clients <= 200 and 1 <= args.duration <= 900 and args.max_requests >= 1):
        ap.error("bounds: 1-200 clients, 1-900 s, at least one request")

    port = free_port()
    url = f"http://{HOST}:{port}"
    cmd = [sys.executable, "-m", "segakit", "serve", "--host", HOST, "--port", str(port), "--max-queue", str(args.max_queue),
           "--threads", str(args.threads), "--log-level", "warning"]  # fmt: skip
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
        for body in table[:4]:  # warm-up: first calls allocate what later ones reuse
            requests.post(f"{url}/api/generate", json=body, timeout=120).raise_for_status()
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
                        received.append(
                            (k, out["seed"], out["parameters"]["prompt"], pixels_digest(base64.b64decode(out["png"])))
                        )
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

    # every received image against a direct call on the parameters the client sent
    import torch

    from segakit.core.images import encode_png
    from segakit.directions.library import Library
    from segakit.jobs.generate import render
    from segakit.sega.pipeline import SegaPipeline
    from segakit.serve.config import Limits
    from segakit.serve.schema import GenerateRequest, to_params

    torch.set_num_threads(args.threads)
    pipe = SegaPipeline.from_pretrained("embedded")
    expected: dict[int, str] = {}
    for k in sorted({k for k, *_ in received}):
        params = to_params(GenerateRequest(**table[k]), "embedded", Limits(), Library.load())
        done = render(params, pipe)
        expected[k] = pixels_digest(encode_png(done.images[0], done.params[0]))
    mismatched = [k for k, seed, prompt, digest in received
                  if digest != expected[k] or seed != table[k]["seed"] or prompt != table[k]["prompt"]]  # fmt: skip

    result = {
        "command": " ".join(["python", "benchmarks/serve_load.py", *sys.argv[1:]]),
        "clients": args.clients, "duration_s": args.duration, "wall_s": round(wall, 1), "steps": args.steps,
        "max_queue": args.max_queue, "server_threads": args.threads, "cpus": os.cpu_count(),
        "load_average_1m_after": round(os.getloadavg()[0], 2),
        "served": len(ok_lat), "throughput_per_s": round(len(ok_lat) / wall, 2),
        "p50_s": round(percentile(ok_lat, 0.5), 3), "p95_s": round(percentile(ok_lat, 0.95), 3),
        "max_s": round(max(ok_lat, default=float("nan")), 3),
        "rejected_429": busy, "p50_429_s": round(percentile(busy_lat, 0.5), 3), "errors": len(errors),
        "error_examples": errors[:5], "mismatched": len(mismatched), "distinct_jobs_checked": len(expected),
        "rss_mb_before": round(mem_before, 1), "rss_mb_after": round(mem_after, 1), "rss_mb_peak": round(max(peak), 1),
        "rss_growth_bound_mb": args.max_growth_mb, "rss_within_bound": max(peak) - mem_before <= args.max_growth_mb,
        "server_counts": {k: health[k] for k in ("served", "failed", "cancelled", "rejected_busy")},
    }  # fmt: skip
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0 if not errors and not mismatched and result["rss_within_bound"] else 1


if __name__ == "__main__":
    sys.exit(main())
