"""Choose the embedded model's default SEGA edit parameters: success of each addition over a small grid.

For every (scale, threshold, warm-up) in the grid, adds each target of the quality table (glasses, smile,
hat, beard, bald, makeup, gray hair, bangs, curls, the other gender) to "a face of a person" on --seeds
seeds whose plain image lacks it, and prints the oracle's success rate per target, the mean and the worst, and
the isolation: the share of the attributes an edit did not target that the oracle still reads the same. It
first measures the baseline, the prompt rewritten to ask for the target ("a face of a person, wearing
glasses") on the same seeds. The pick is the setting with the best worst target (then the best mean, then the best isolation) among
those whose mean isolation is at least --min-isolation, by default the rewrite's: an edit that changes more
of the face than rewriting the prompt would is not what SEGA promises, however often its target shows.
It uses seeds from 500,000 on, apart from the quality table's (100,000 on) and the SEGA study's (0 on),
so the parameters are not tuned on the seeds that report them.

    python benchmarks/sega_defaults.py --scales 5,7,10 --thresholds 0.9,0.95 --warmups 3,5 --seeds 12
    python benchmarks/sega_defaults.py --model embedded-flow --scales 8 --thresholds 0.9 --warmups 3 --momentum 0,0.1,0.3
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from dataclasses import replace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

from segakit.eval.embedded_quality import QualityConfig, neutral_images, sega_success  # noqa: E402
from segakit.sega.guidance import Edit  # noqa: E402
from segakit.sega.pipeline import SegaPipeline  # noqa: E402
from segakit.world.oracle import Oracle  # noqa: E402

TUNING_SEED = 400_000  # neutral seeds are seed + 100,000 + i


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--scales", type=floats, default=floats("5,7,10"))
    ap.add_argument("--thresholds", type=floats, default=floats("0.9,0.95"))
    ap.add_argument("--warmups", type=floats, default=floats("3,5"))
    ap.add_argument(
        "--momentum", type=floats, default=floats("0.1"), help="SEGA momentum scales to try (the paper's: 0.1)"
    )
    ap.add_argument("--seeds", type=int, default=12, help="seeds per target (lacking it in the plain image)")
    ap.add_argument("--scan", type=int, default=120, help="plain images scanned for seeds lacking each target")
    ap.add_argument(
        "--min-isolation",
        type=float,
        default=None,
        help="mean share of untargeted attributes kept that a setting needs to be picked "
        "(default: the prompt rewrite's)",
    )
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe = SegaPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    oracle = Oracle.load()
    base = QualityConfig(seed=TUNING_SEED, sega_seeds=args.seeds, sega_scan=args.scan)
    t0 = time.perf_counter()
    plain = neutral_images(pipe, base, args.scan, None, None)
    print(
        f"model {args.model}, {args.seeds} seeds per target from {args.scan} plain images "
        f"(seeds {TUNING_SEED + 100_000}..), 25 steps, guidance 7.5",
        flush=True,
    )

    def summary(res: dict) -> tuple[float, float, float, dict]:
        rates = {k: v["success"] for k, v in res.items()}
        valid = [r for r in rates.values() if r == r]
        kept = [v["isolation"] for v in res.values() if v["isolation"] == v["isolation"]]
        return sum(valid) / len(valid), min(valid), sum(kept) / len(kept), rates

    def show(rates: dict) -> str:
        return " ".join(f"{k}={v:.2f}" for k, v in rates.items())

    mean, worst, iso, rates = summary(sega_success(pipe, oracle, base, images=plain, rewrite=True)["targets"])
    print(f"prompt rewrite (no SEGA): mean {mean:.3f} worst {worst:.3f} isolation {iso:.3f}  {show(rates)}", flush=True)
    min_isolation = iso if args.min_isolation is None else args.min_isolation
    rows = []
    for scale in args.scales:
        for threshold in args.thresholds:
            for warmup in args.warmups:
                for momentum in args.momentum:
                    edit = Edit(scale=scale, threshold=threshold, warmup=int(warmup))
                    res = sega_success(pipe, oracle, replace(base, edit=edit, momentum=momentum), images=plain)[
                        "targets"
                    ]
                    mean, worst, iso, rates = summary(res)
                    rows.append((scale, threshold, int(warmup), mean, worst, iso, momentum))
                    print(
                        f"scale {scale:g} threshold {threshold:g} warm-up {int(warmup)} momentum {momentum:g}: mean "
                        f"{mean:.3f} worst {worst:.3f} isolation {iso:.3f}  {show(rates)}",
                        flush=True,
                    )
    eligible = [r for r in rows if r[5] >= min_isolation]
    if not eligible:
        print(f"no setting keeps a mean isolation of {min_isolation:.3f}; picking from all", flush=True)
    best = max(eligible or rows, key=lambda r: (r[4], r[3], r[5]))
    print(
        f"best (isolation >= {min_isolation:.3f}, worst target first, then mean, then isolation): scale {best[0]:g} "
        f"threshold {best[1]:g} warm-up {best[2]} momentum {best[6]:g} -> worst {best[4]:.3f}, mean {best[3]:.3f}, isolation {best[5]:.3f}; "
        f"{time.perf_counter() - t0:.0f} s",
        flush=True,
    )


if __name__ == "__main__":
    main()
