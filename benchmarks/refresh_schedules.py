"""Which concept-refresh schedule approximates exact SEGA best at a given cost: a cheap proxy before a study.

For each schedule (a refresh interval per step), SEGA with 4 concepts runs on the same seeds as exact SEGA, and
the script prints the concept rows it computes per step (the cost; exact SEGA computes 4) and how far its final
latents land from exact SEGA's (relative L2 per image, mean and worst) -- the approximation error a study would then
judge with the oracle. Schedules:

- ``uniform K``: every K steps from step 0 (what ``edit_refresh=K`` did at first);
- ``dense A-B K1/K2``: every K1 steps within steps A..B-1, every K2 elsewhere (e.g. around the steps where
  ``benchmarks/refresh_drift.py`` finds directions changing fastest);
- ``from warm-up K``: at step 0, at the warm-up step (where the concept starts acting) and every K steps after it:
  what ``edit_refresh=K`` does now (the ``edit_refresh K`` rows run the pipeline itself, unpatched, as a check).

    python benchmarks/refresh_schedules.py --threads 1
    python benchmarks/refresh_schedules.py --threads 1 --steps 50 --only 4,6,8   # edit_refresh K alone, 50 steps

Uses the embedded model's edit defaults (scale 6, threshold 0.8, warm-up 5) and 25 steps.
"""

from __future__ import annotations

import argparse
import os
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

import segakit.sega.groups as groups_module  # noqa: E402
from segakit import Edit, SegaPipeline  # noqa: E402
from segakit.sega.guidance import ConceptRefresh  # noqa: E402

CONCEPTS = ["glasses", "a hat", "smiling", "beard"]


class Scheduled(ConceptRefresh):
    """Concept refresh whose interval depends on the step, ``interval(step)``; also refreshed at ``starts``."""

    def __init__(self, interval, starts=()) -> None:
        super().__init__(2)
        self.interval, self.starts = interval, list(starts)
        self.rows = 0

    def due(self, step, alive):
        due = [
            k
            for k in alive
            if k not in self._last or step - self._last[k] >= self.interval(step) or step in self.starts[k : k + 1]
        ]
        self.rows += len(due)
        return due


class Counted(ConceptRefresh):
    """The pipeline's own refresh, counting the rows it computes."""

    rows = 0

    def due(self, step, alive):
        due = super().due(step, alive)
        Counted.rows += len(due)
        return due


def schedules(steps: int) -> dict:
    def dense(a, b, k1, k2):
        return lambda s: k1 if a <= s < b else k2

    return {
        "uniform 1 (exact)": lambda s: 1,
        "uniform 2": lambda s: 2,
        "uniform 3": lambda s: 3,
        "uniform 4": lambda s: 4,
        "uniform 5": lambda s: 5,
        "dense 0-10 2/6": dense(0, 10, 2, 6),
        "dense 5-10 2/5": dense(5, 10, 2, 5),
        "dense 5-12 2/6": dense(5, 12, 2, 6),
        "dense 0-5 1/4": dense(0, 5, 1, 4),
        "sparse 0-5 5/4": dense(0, 5, 5, 4),
        "from warm-up 3": (lambda s: 3, "warmup"),
        "from warm-up 4": (lambda s: 4, "warmup"),
        "from warm-up 5": (lambda s: 5, "warmup"),
        "from warm-up 6": (lambda s: 6, "warmup"),
        "edit_refresh 4": 4,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--only", default="", help="comma-separated K: only the pipeline's edit_refresh=K rows")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe = SegaPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    edits = [Edit(c) for c in CONCEPTS]

    def run(refresh: int = 1):
        return pipe("a face of a person", edits=edits, edit_refresh=refresh, num_inference_steps=args.steps,
                    num_images_per_prompt=args.images, output_type="latent",
                    generator=torch.Generator().manual_seed(0)).images  # fmt: skip

    exact = run().flatten(1)
    print(f"model {args.model}; {args.images} images x {args.steps} steps; {len(edits)} concepts (exact computes "
          f"{len(edits)} concept rows per step)")  # fmt: skip
    print("| schedule | concept rows per step | error mean | error worst |")
    print("|---|---:|---:|---:|")
    original = groups_module.ConceptRefresh
    chosen = schedules(args.steps)
    if args.only:
        chosen = {f"edit_refresh {k}": int(k) for k in args.only.split(",")}
    for name, interval in chosen.items():
        if isinstance(interval, int):  # the pipeline's own edit_refresh=K
            Counted.rows = 0
            groups_module.ConceptRefresh = Counted
            try:
                out = run(refresh=interval).flatten(1)
            finally:
                groups_module.ConceptRefresh = original
            rows = Counted.rows
        else:
            interval, starts = interval if isinstance(interval, tuple) else (interval, None)
            starts = [e.with_defaults(pipe.edit_defaults).warmup for e in edits] if starts else ()
            made: list[Scheduled] = []

            def factory(every, *a, _interval=interval, _starts=starts, _made=made, **k):
                _made.append(Scheduled(_interval, _starts))
                return _made[-1]

            groups_module.ConceptRefresh = factory
            try:
                out = run(refresh=2).flatten(1)  # any K != 1 builds the (patched) refresh
            finally:
                groups_module.ConceptRefresh = original
            rows = made[0].rows
        err = (out - exact).norm(dim=1) / exact.norm(dim=1)
        print(f"| {name} | {rows / args.steps:.2f} | {err.mean():.4f} | {err.max():.4f} |", flush=True)


if __name__ == "__main__":
    main()
