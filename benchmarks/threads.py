"""Thread count against other work on the machine: the embedded-speed call and the demo, N threads vs 1.

Runs side by side in one process, so the conditions are the same for every setting: first the machine as
found (whatever else runs on it; the script prints the cores other processes kept busy), then with one more
busy process that this script starts (a Python busy loop) and stops at the end. In each condition it times
the call of benchmarks/embedded_speed.py (16 images by default, 25 DDIM steps, guidance + 2 SEGA edits,
after a small warm-up call) and `segakit demo` (a fresh process: start-up, loading and the gallery) at every thread count
asked for, and says what segakit's default (`segakit.core.threads.choose_threads`) picks there.

    python benchmarks/threads.py                        # threads 2 (torch's default here: one per core) and 1
    python benchmarks/threads.py --threads 4,2,1 --images 4 --repeats 1   # a quarter of the call, on a busy machine
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

from segakit import Edit  # noqa: E402
from segakit.core.threads import busy_elsewhere, choose_threads, usable_cores  # noqa: E402
from segakit.sega.pipeline import SegaPipeline  # noqa: E402


def time_call(pipe, threads: int, images: int, steps: int, repeats: int) -> float:
    torch.set_num_threads(threads)
    edits = [Edit("glasses"), Edit("smile")]

    def once() -> float:
        gens = [torch.Generator().manual_seed(i) for i in range(images)]
        t = time.perf_counter()
        pipe("a face of a person", num_inference_steps=steps, num_images_per_prompt=images, generator=gens, edits=edits)
        return time.perf_counter() - t

    pipe("a face", num_inference_steps=2, generator=torch.Generator().manual_seed(0), edits=edits)  # warm-up, small
    return statistics.median(once() for _ in range(repeats))


def time_demo(threads: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "segakit", "demo", "--threads", str(threads), "--out", out],
                       check=True, env=env, capture_output=True)  # fmt: skip
        return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default=f"{usable_cores()},1", help="Thread counts to compare, e.g. 2,1.")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--no-demo", action="store_true", help="Time only the embedded-speed call.")
    args = ap.parse_args()
    counts = [int(x) for x in args.threads.split(",")]
    pipe = SegaPipeline.from_pretrained("embedded")
    pipe.set_progress_bar_config(disable=True)
    print(
        f"{usable_cores()} usable cores; embedded model, {args.images} images x {args.steps} steps + 2 edits, median of {args.repeats}"
    )
    print("| condition | busy cores elsewhere | default picks | threads | call (s) | demo (s) |")
    print("|---|---|---|---|---|---|")
    busy = None
    try:
        for condition in ("as found", "as found + 1 busy loop"):
            if condition.endswith("busy loop"):
                busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                time.sleep(2)
            load = busy_elsewhere(1.0)
            picks = choose_threads()
            for n in counts:
                call = time_call(pipe, n, args.images, args.steps, args.repeats)
                demo = "-" if args.no_demo else f"{time_demo(n):.1f}"
                print(f"| {condition} | {load:.2f} | {picks} | {n} | {call:.1f} | {demo} |", flush=True)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()


if __name__ == "__main__":
    main()
