"""The embedded flow model's speed against the embedded U-Net model's, measured side by side in one run.

16 images of "a face of a person", 25 steps, guidance at each model's default, plain and with two SEGA edits
(+glasses, +smile); decoding left out (output_type="latent"); the median of --repeats interleaved runs after a
warm-up. Issue 33's target: the flow model with 2 edits at most 1.5x the U-Net model's time.

    python benchmarks/flow_speed.py --threads 1
    python benchmarks/flow_speed.py --flow FOLDER        # another flow folder (default: embedded-flow)
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

from segakit import Edit, SegaPipeline  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--unet", default="embedded")
    ap.add_argument("--flow", default="embedded-flow")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipes = {name: SegaPipeline.from_pretrained(model) for name, model in (("U-Net", args.unet), ("flow", args.flow))}
    for p in pipes.values():
        p.set_progress_bar_config(disable=True)
    edits = [Edit("glasses"), Edit("smile")]

    def run(pipe, with_edits: bool) -> float:
        t = time.perf_counter()
        pipe("a face of a person", num_inference_steps=args.steps, num_images_per_prompt=args.images,
             edits=edits if with_edits else [], output_type="latent",
             generator=torch.Generator().manual_seed(0))  # fmt: skip
        return time.perf_counter() - t

    cases = [(name, e) for e in (False, True) for name in pipes]
    for name, e in cases:
        run(pipes[name], e)  # warm-up
    times: dict = {c: [] for c in cases}
    for _ in range(args.repeats):
        for name, e in cases:
            times[(name, e)].append(run(pipes[name], e))
    med = {c: statistics.median(ts) for c, ts in times.items()}
    print(f"{args.images} images x {args.steps} steps, threads {torch.get_num_threads()}, median of {args.repeats}")
    print(f"  U-Net ({args.unet}) plain    {med[('U-Net', False)]:6.2f} s   2 edits {med[('U-Net', True)]:6.2f} s")
    print(f"  flow ({args.flow}) plain    {med[('flow', False)]:6.2f} s   2 edits {med[('flow', True)]:6.2f} s")
    print(f"  flow / U-Net: plain {med[('flow', False)] / med[('U-Net', False)]:.2f}x, "
          f"2 edits {med[('flow', True)] / med[('U-Net', True)]:.2f}x (target <= 1.5x)")  # fmt: skip


if __name__ == "__main__":
    main()
