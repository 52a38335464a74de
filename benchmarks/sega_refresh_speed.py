"""SEGA's cost over plain classifier-free guidance, exact and with concept refresh (``edit_refresh=K``), and with
classifier-free guidance itself refreshed (``guidance_refresh=G``: the unconditional row every G steps).

Same model, prompt, seeds, steps and threads in one run; medians of --repeats interleaved runs; decoding left
out (output_type="latent") so the numbers compare the sampling loops.

    python benchmarks/sega_refresh_speed.py                       # embedded model, 16 images x 25 steps
    python benchmarks/sega_refresh_speed.py --refresh 2,3,4 --threads 1 --repeats 3
    python benchmarks/sega_refresh_speed.py --refresh 4 --guidance-refresh 2,3 --threads 1 --repeats 3

Prints, for 2 and 4 edits, the cost over plain CFG for exact SEGA and each K (issue targets: 2 edits <= 1.25x,
4 edits <= 1.5x, moonshot 2 edits <= 1.0x), three ways: the denoiser rows per image and step (exact, counted; what
the time follows where a row costs the same at any batch), the median time and the fastest run (on a shared machine
other work only slows a run down, so the fastest is the least disturbed).
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

CONCEPTS = ["glasses", "a hat", "smiling", "beard"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--refresh", default="2,3,4")
    ap.add_argument("--guidance-refresh", default="", help="comma-separated G: also every case with guidance_refresh=G")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe = SegaPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    ks = [int(k) for k in args.refresh.split(",")]

    gs = [int(g) for g in args.guidance_refresh.split(",") if g.strip()]

    def run(n_edits: int, k: int, g: int = 1):
        edits = [Edit(c) for c in CONCEPTS[:n_edits]]
        return lambda: pipe("a face of a person", edits=edits, edit_refresh=k, guidance_refresh=g, num_inference_steps=args.steps,
                            num_images_per_prompt=args.images, output_type="latent",
                            generator=torch.Generator().manual_seed(0))  # fmt: skip

    cases = {"plain CFG": run(0, 1)}
    for n in (2, 4):
        cases[f"{n} edits, exact"] = run(n, 1)
        for k in ks:
            cases[f"{n} edits, refresh {k}"] = run(n, k)
    for g in gs:
        cases[f"CFG refresh {g}"] = run(0, 1, g)
        for n in (2, 4):
            for k in ks:
                cases[f"{n} edits, refresh {k}, CFG {g}"] = run(n, k, g)
    rows: dict[str, float] = {}  # denoiser rows per image per step: the cost that does not depend on the machine
    counted: list[int] = []
    denoiser = pipe.family.denoiser

    def count(module, args, kwargs):
        x = args[0] if args else kwargs.get("hidden_states", kwargs.get("sample"))
        counted.append(x.shape[0])

    hook = denoiser.register_forward_pre_hook(count, with_kwargs=True)
    for name, fn in cases.items():
        counted.clear()
        fn()  # warm-up, counting rows
        rows[name] = sum(counted) / (args.images * args.steps)
    hook.remove()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, fn in cases.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    base, fastest = statistics.median(times["plain CFG"]), min(times["plain CFG"])
    print(f"model {args.model}; {args.images} images x {args.steps} steps; threads {torch.get_num_threads()}; "
          f"{args.repeats} interleaved runs each")  # fmt: skip
    print(
        "| case | rows per image-step | over plain CFG | time, median | over plain CFG | time, fastest | over plain CFG |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, ts in times.items():
        m, f = statistics.median(ts), min(ts)
        print(f"| {name} | {rows[name]:.2f} | {rows[name] / rows['plain CFG']:.2f}x | {m:.2f} s | {m / base:.2f}x | "
              f"{f:.2f} s | {f / fastest:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
