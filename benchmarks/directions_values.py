"""Does each value's direction draw its value? One attribute's library directions, one at a time, on one prompt.

Fair generation can only balance an attribute whose every value's direction draws that value. This applies each
of the attribute's directions alone at each strength to the same seeds of a prompt and prints what the oracle
reads: the share that shows the direction's value and the counts of every value read. On the embedded model the
skin directions for the ends of the scale land and the middle ones pull towards a neighbour (docs/directions.md).

    python benchmarks/directions_values.py                                   # skin on "a doctor", 16 seeds, 0.5 and 1
    python benchmarks/directions_values.py --attribute presentation --prompt "a nurse" --seeds 24 --strengths 0.5,0.75,1
"""

from __future__ import annotations

import argparse
import collections
import os
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

from segakit.directions.library import Library, key  # noqa: E402
from segakit.eval.embedded_quality import sample_images  # noqa: E402
from segakit.sega.pipeline import SegaPipeline  # noqa: E402
from segakit.world.oracle import Oracle  # noqa: E402


def images(pipe, prompt: str, seeds: list[int], directions: list) -> torch.Tensor:
    return sample_images(pipe, prompt, seeds, steps=25, guidance=7.5, batch=8, directions=directions)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--attribute", default="skin")
    ap.add_argument("--prompt", default="a doctor")
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--strengths", default="0.5,1")
    ap.add_argument("--library", default=None, help="A direction library folder (default: the embedded model's).")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lib = Library.load(args.library)
    pipe = SegaPipeline.from_pretrained(lib.meta.get("model", "embedded"))
    pipe.set_progress_bar_config(disable=True)
    oracle = Oracle.load()
    seeds = list(range(args.seeds))
    plain = collections.Counter(
        str(r[args.attribute]).lower() for r in oracle.predict(images(pipe, args.prompt, seeds, []))
    )
    print(f"{args.prompt!r}, {args.seeds} seeds; plain: {dict(plain)}\n")
    print("| direction | strength | shows its value | the oracle reads |\n|---|---|---|---|")
    for value in lib.values(args.attribute):
        for strength in (float(s) for s in args.strengths.split(",")):
            got = images(pipe, args.prompt, seeds, [lib.direction(key(args.attribute, value)).at(strength)])
            counts = collections.Counter(str(r[args.attribute]).lower() for r in oracle.predict(got))
            print(
                f"| {args.attribute}={value} | {strength:g} | {counts[value] / len(seeds):.2f} | {dict(counts.most_common())} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
