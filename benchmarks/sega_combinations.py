"""The SEGA paper's four-edit combinations at several edit settings: which of the four edits a model loses.

The SEGA study (``segakit eval sega``) runs the paper's two combinations (glasses + smile + curls + beard; no smile +
makeup + hat + woman) at one setting, the model's edit defaults. This benchmark runs them at each setting given,
on the same seeds (from 600,000 on, apart from every study's and from the edit defaults' 500,000), and prints per
setting the share of seeds showing all four goals and each edit's success, so a combination that fails can be
traced to the edits that lose out and to the knob that brings them back.

A setting is ``SCALE:THRESHOLD:WARMUP[:MOMENTUM]`` for every edit of the combination, e.g. ``8:0.9:3`` or
``12:0.8:3:0``; a ``NAME=SCALE`` in ``--boost`` sets one edit's scale in every setting, a ``NAME=STEP`` in
``--warmup-of`` its warm-up.

    python benchmarks/sega_combinations.py --model embedded-flow --settings 8:0.9:3,8:0.8:3,12:0.8:3,8:0.9:3:0
    python benchmarks/sega_combinations.py --model embedded --settings 6:0.8:5 --seeds 48
    python benchmarks/sega_combinations.py --model embedded-flow --edits smile+beard,smile+curls,glasses+beard
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

from segakit.core.errors import UserError  # noqa: E402
from segakit.eval.embedded_quality import sample_images  # noqa: E402
from segakit.eval.targets import COMBINATIONS, by_name  # noqa: E402
from segakit.sega.guidance import Edit  # noqa: E402
from segakit.sega.pipeline import SegaPipeline  # noqa: E402
from segakit.world.oracle import Oracle  # noqa: E402

FIRST_SEED = 600_000
PROMPT = "a face of a person"


def parse_setting(text: str) -> tuple[float, float, int, float]:
    """``"8:0.9:3[:0.1]"`` -> (scale, threshold, warm-up, momentum); ValueError when it is not that."""
    parts = text.split(":")
    if len(parts) not in (3, 4):
        raise ValueError(text)
    momentum = float(parts[3]) if len(parts) == 4 else 0.1
    return float(parts[0]), float(parts[1]), int(parts[2]), momentum


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--settings", default="8:0.9:3")
    ap.add_argument("--boost", default="", help="NAME=SCALE,... : one edit's scale in every setting (e.g. smile=12)")
    ap.add_argument(
        "--warmup-of", default="", help="NAME=STEP,... : one edit's warm-up in every setting (e.g. beard=8)"
    )
    ap.add_argument("--seeds", type=int, default=48)
    ap.add_argument("--combination", type=int, choices=(0, 1, 2), default=0, help="1 or 2: only that one")
    ap.add_argument("--edits", default="", help="combinations of your own instead: study targets joined by '+', "
                    "several separated by ',' (e.g. smile+beard,smile+curls)")  # fmt: skip
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    try:
        settings = [parse_setting(s.strip()) for s in args.settings.split(",") if s.strip()]
    except ValueError:
        ap.error(f"--settings {args.settings!r}: write SCALE:THRESHOLD:WARMUP[:MOMENTUM],..., e.g. 8:0.9:3,12:0.8:3:0")
    try:
        boost = {k: float(v) for k, v in (item.split("=") for item in args.boost.split(",") if item.strip())}
    except ValueError:
        ap.error(f"--boost {args.boost!r}: write NAME=SCALE,..., e.g. curls=5,beard=5")
    try:
        late = {k: int(v) for k, v in (item.split("=") for item in args.warmup_of.split(",") if item.strip())}
    except ValueError:
        ap.error(f"--warmup-of {args.warmup_of!r}: write NAME=STEP,... with whole steps, e.g. beard=8")
    try:
        own = [tuple(by_name(n.strip()) for n in c.split("+")) for c in args.edits.split(",") if c.strip()]
    except UserError as err:
        ap.exit(2, f"--edits: {err}\n")
    torch.set_num_threads(args.threads)
    pipe = SegaPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    oracle = Oracle.load()
    seeds = list(range(FIRST_SEED, FIRST_SEED + args.seeds))
    combos = COMBINATIONS if not args.combination else COMBINATIONS[args.combination - 1 : args.combination]
    combos = own or combos
    print(f"model {args.model}, {len(seeds)} seeds of {PROMPT!r} from {FIRST_SEED}, 25 steps, guidance 7.5")
    t0 = time.perf_counter()
    for combo in combos:
        names = " + ".join(t.name for t in combo)
        print(f"\n{names}\n| setting | all {len(combo)} | " + " | ".join(t.name for t in combo) + " |")
        print("|---|---:|" + "---:|" * len(combo))
        for scale, threshold, warmup, momentum in settings:
            edits = [Edit(prompt=t.prompt, scale=boost.get(t.name, scale), threshold=threshold,
                          warmup=late.get(t.name, warmup), reverse=t.remove) for t in combo]  # fmt: skip
            images = sample_images(pipe, PROMPT, seeds, 25, 7.5, 8, edits, momentum=momentum)
            labels = oracle.predict(images)
            hits = [[t.achieved(lab) for t in combo] for lab in labels]
            every = sum(all(h) for h in hits) / len(hits)
            each = [sum(h[i] for h in hits) / len(hits) for i in range(len(combo))]
            label = f"{scale:g} / {threshold:g} / {warmup} / momentum {momentum:g}"
            print(f"| {label} | {every:.3f} | " + " | ".join(f"{e:.3f}" for e in each) + " |", flush=True)
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
