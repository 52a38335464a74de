"""What "a face of a person" asks for under the training captions: per attribute, the share of each value among the
world faces whose caption does not name that attribute, next to the world's prior.

The U-Net learns p(image | caption); a prompt that names no attribute asks for the faces whose captions named
none. If whether a caption names an attribute depended on its value (say, roles named whenever present), that
conditional would differ from the prior and a "prior gap" on the neutral prompt would be the captions' doing, not
the U-Net's. Captions are drawn as the U-Net stage draws them (``segakit.world.captions.caption``) and read back
with the world's caption parser.

    python benchmarks/caption_priors.py --n 20000
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np

from segakit.world.captions import caption, parse_caption
from segakit.world.schema import ATTRIBUTES, sample_face


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20000, help="World faces (each with one caption).")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    prior = {a: Counter() for a in ATTRIBUTES}
    unnamed = {a: Counter() for a in ATTRIBUTES}
    for _ in range(args.n):
        face = sample_face(rng)
        named = parse_caption(caption(face, rng))
        for a in ATTRIBUTES:
            v = getattr(face, a)
            prior[a][v] += 1
            if a not in named:
                unnamed[a][v] += 1
    print(f"{args.n} faces (seed {args.seed}); per attribute: value: share among captions not naming it / world share")
    worst = 0.0
    for a in ATTRIBUTES:
        n_un = sum(unnamed[a].values())
        cells = []
        for v in ATTRIBUTES[a]:
            p, q = prior[a][v] / args.n, unnamed[a][v] / max(n_un, 1)
            worst = max(worst, abs(p - q))
            cells.append(f"{v}: {q:.3f} / {p:.3f}")
        print(f"  {a} ({n_un} captions without it): " + ", ".join(cells))
    print(f"largest difference: {worst:.3f}")


if __name__ == "__main__":
    main()
