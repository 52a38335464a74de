"""Does the batching server's memory settle? Shared calls of changing sizes in one process, RSS after each.

    python benchmarks/serve_memory.py --calls 50 --threads 1
    python benchmarks/serve_memory.py --calls 50 --no-release     # without handing free memory back after a call

A :class:`segakit.serve.service.Service` on the embedded model (no HTTP) runs --calls shared calls, each of 2-29
requests drawn (seeded) from the load test's parameter sets (``benchmarks/serve_load.py``): a job holds the worker
while the requests queue, so they meet in one call. It prints the resident memory after every 10 calls: growth
that slows to nothing is the allocator settling; growth that keeps its pace would be a leak.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_load import jobs  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-release", action="store_true", help="skip release_free_memory after each shared call")
    args = ap.parse_args()

    import torch

    import segakit.serve.service as service_module
    from segakit.serve.config import Limits, ServeConfig
    from segakit.serve.schema import GenerateRequest

    torch.set_num_threads(args.threads)
    if args.no_release:
        service_module.release_free_memory = lambda: None
    service = service_module.Service.load(ServeConfig(limits=Limits(max_queue=64, max_batch_rows=128)))
    table = [GenerateRequest(**body) for body in jobs(4)]
    rng = random.Random(args.seed)
    readings = {"start": round(rss_mb(), 1)}
    try:
        for call in range(1, args.calls + 1):
            gate, started = threading.Event(), threading.Event()
            service.worker.submit("hold", {}, lambda check, gate=gate, started=started: started.set() or gate.wait())
            started.wait()
            queued = [service.submit(service.params(rng.choice(table))) for _ in range(rng.randrange(2, 30))]
            gate.set()
            for job in queued:
                job.future.result()
            if call % 10 == 0:
                readings[f"after {call} calls"] = round(rss_mb(), 1)
                print(json.dumps(readings), flush=True)
    finally:
        service.close()
    print(json.dumps({"release_free_memory": not args.no_release, "rss_mb": readings}, indent=1))


if __name__ == "__main__":
    main()
