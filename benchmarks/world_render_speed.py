"""Rendering speed of the faces world on one CPU core.

    python benchmarks/world_render_speed.py [--n 2000] [--seed 0]

Prints images per second for: drawing only (Face -> 64x64 image), a full sample (face + caption + image),
and a full sample encoded as PNG. The process is pinned to one core where the OS allows it.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="report the best of this many runs")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    from segakit.world.dataset import png_bytes, samples
    from segakit.world.render import render
    from segakit.world.schema import sample_face

    faces = [sample_face(np.random.default_rng([args.seed, i])) for i in range(args.n)]
    render(faces[0])  # warm-up

    def best(fn) -> float:
        rates = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            fn()
            rates.append(args.n / (time.perf_counter() - t))
        return max(rates)

    draw = best(lambda: [render(f) for f in faces])
    full = best(lambda: [s for s in samples(args.n, args.seed)])
    png = best(lambda: [png_bytes(s.image) for s in samples(args.n, args.seed)])
    print(f"faces world rendering, one core, n={args.n} (best of {args.repeats})")
    print(f"render(face) -> 64x64           {draw:8.1f} images/s")
    print(f"samples(): face+caption+image   {full:8.1f} images/s")
    print(f"samples() + PNG encoding        {png:8.1f} images/s")
    print(f"target >= 200 images/s: {'PASS' if full >= 200 else 'FAIL'}")


if __name__ == "__main__":
    main()
