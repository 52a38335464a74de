"""Issue 4's speed target on the embedded model: 16 images, 25 DDIM steps, guidance plus 2 SEGA edits.

Target: 20 s or less on the 2-core development CPU (both threads). Times the whole call that a user
makes, decoding and PIL conversion included, as the median of --repeats runs after one warm-up, and
prints the plain (no edits) time beside it measured in the same run.

    python benchmarks/embedded_speed.py                       # the shipped embedded model
    python benchmarks/embedded_speed.py --model PATH --threads 2 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

from segakit import Edit  # noqa: E402
from segakit.sega.pipeline import SegaPipeline  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe = SegaPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    edits = [Edit("glasses"), Edit("smile")]

    def run(with_edits: bool) -> float:
        gens = [torch.Generator().manual_seed(i) for i in range(args.images)]
        t = time.perf_counter()
        pipe("a face of a person", num_inference_steps=args.steps, num_images_per_prompt=args.images,
             generator=gens, edits=edits if with_edits else [])  # fmt: skip
        return time.perf_counter() - t

    run(True)  # warm-up
    sega, plain = [], []
    for _ in range(args.repeats):
        sega.append(run(True))
        plain.append(run(False))
    s, p = statistics.median(sega), statistics.median(plain)
    print(
        f"model {args.model}, {args.images} images, {args.steps} steps, {args.threads} threads, median of {args.repeats}"
    )
    print(f"  guidance + 2 SEGA edits: {s:6.2f} s   (target <= 20 s)  {'OK' if s <= 20 else 'MISSED'}")
    print(f"  guidance only:           {p:6.2f} s   (ratio {s / p:.2f}; the U-Net batch is 4 rows per image vs 2)")


if __name__ == "__main__":
    main()
