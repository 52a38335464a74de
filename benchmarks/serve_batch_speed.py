"""What a shared call buys in the pipeline alone: N requests of the load test's mix in one call vs each alone.

    python benchmarks/serve_batch_speed.py --requests 1,4,8,16 --repeats 3 --threads 1

The requests are drawn (seeded) from the parameter sets of ``benchmarks/serve_load.py`` (3 prompts x 4 edit lists of
0-2 concepts x 2 seeds, 4 steps, one image each). For each N the same requests run once each alone (``render``, as a
server with ``--max-batch-rows 1`` runs them) and once together (``render_together``, one call with edit groups, as
the batching server runs them); both are timed in this process, alternating, best of --repeats. The ratio is the
ceiling of what batching gives the server's throughput on this machine: the server adds per-request work (HTTP,
JSON, PNG) that a shared call does not share.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_load import jobs  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", default="1,4,8,16", help="requests per shared call, comma-separated")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    from segakit.directions.library import Library
    from segakit.jobs.generate import render
    from segakit.jobs.together import render_together
    from segakit.sega.pipeline import SegaPipeline
    from segakit.serve.config import Limits
    from segakit.serve.schema import GenerateRequest, to_params

    torch.set_num_threads(args.threads)
    pipe = SegaPipeline.from_pretrained("embedded")
    pipe.set_progress_bar_config(disable=True)
    library = Library.load()
    table = [to_params(GenerateRequest(**body), "embedded", Limits(), library) for body in jobs(args.steps)]
    rng = random.Random(args.seed)
    render_together(table[:4], pipe)  # warm-up
    rows = []
    for n in [int(x) for x in args.requests.split(",")]:
        asked = [rng.choice(table) for _ in range(n)]
        alone, together = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            for p in asked:
                render(p, pipe)
            alone.append(time.perf_counter() - t)
            t = time.perf_counter()
            render_together(asked, pipe)
            together.append(time.perf_counter() - t)
        rows.append({"requests": n, "alone_s": round(min(alone), 3), "together_s": round(min(together), 3),
                     "ratio": round(min(alone) / min(together), 2)})  # fmt: skip
    print(json.dumps({"threads": args.threads, "steps": args.steps, "load_average_1m": round(os.getloadavg()[0], 2),
                      "rows": rows}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
