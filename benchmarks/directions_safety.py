"""The anti-horror direction: which learning recipe removes horror, at which strength, and what else it changes.

Learns the anti-horror direction with each recipe (images from the neutral prompt with "a zombie" as the negative
prompt; the U-Net conditioned on the neutral prompt, as the paper words it for anti-concepts ("paper"), or on the
horror prompt ("horror-conditioned", what the embedded library ships)), then at each strength measures, side by
side on the same seeds: the share of images the oracle reads as horror on the four horror phrasings of the
directions study, and on the two clean prompts the share of the other attributes the direction changes against
the plain image of the same seed (the study's collateral change). `--warmups` also tries starting the direction
only after that many denoising steps. Prints one table; `--out` writes it as JSON.

    python benchmarks/directions_safety.py --seeds 16 --strengths 0.5,1,2,3 --out docs/results/directions/safety-recipes.json
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from segakit.core.atomic import write_json  # noqa: E402
from segakit.core.fingerprint import pipeline_fingerprint  # noqa: E402
from segakit.directions import LearnConfig, learn_direction  # noqa: E402
from segakit.eval.directions_study.config import CLEAN_PROMPTS, HORROR_PROMPTS  # noqa: E402
from segakit.sega.pipeline import SegaPipeline  # noqa: E402
from segakit.world.oracle import Oracle  # noqa: E402
from segakit.world.schema import ATTRIBUTES  # noqa: E402

NEUTRAL, HORROR = "a face of a person", "a zombie"
RECIPES = {"paper": NEUTRAL, "horror-conditioned": HORROR}  # recipe -> the prompt the U-Net is conditioned on


class WarmShift:
    """The pipeline's h-space offset, left out of the first ``warmup`` denoising steps (``pipe.unet``'s mid-block
    hook stays the pipeline's own; this only withholds its rows)."""

    def __init__(self, module, warmup: int) -> None:
        self.module, self.warmup, self.original = module, warmup, module.MidBlockShift

    def __enter__(self):
        warmup, base = self.warmup, self.original

        class Shift(base):
            def __init__(self, unet) -> None:
                super().__init__(unet)
                self.calls = 0

            def set(self, deltas):
                self.calls += 1
                super().set(deltas if self.calls > warmup else None)

        self.module.MidBlockShift = Shift
        return self

    def __exit__(self, *exc) -> None:
        self.module.MidBlockShift = self.original


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", default="paper,horror-conditioned")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--strengths", default="0.5,1,2,3")
    ap.add_argument("--warmups", default="0", help="denoising steps without the direction, comma-separated")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", default="runs/directions-cache")
    ap.add_argument("--out", type=Path, default=Path("out/directions-safety.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import segakit.sega.pipeline as pipeline_module

    pipe = SegaPipeline.from_pretrained("embedded")
    pipe.set_progress_bar_config(disable=True)
    oracle = Oracle.load()
    seeds = list(range(args.seeds))
    others = [a for a in ATTRIBUTES if a != "horror"]

    def labels(prompt: str, directions: list) -> list[dict]:
        images = pipe(prompt, num_inference_steps=25, guidance_scale=7.5, num_images_per_prompt=len(seeds), directions=directions,
                      generator=[torch.Generator().manual_seed(s) for s in seeds], output_type="pt").images  # fmt: skip
        return oracle.predict(images.float().clamp(0, 1))

    plain = {p: labels(p, []) for p in (*HORROR_PROMPTS, *CLEAN_PROMPTS)}
    rows = [{"recipe": "plain", "strength": 0.0, "warmup": 0, "horror": float(np.mean([lab["horror"] for p in HORROR_PROMPTS for lab in plain[p]]))}]
    print("| recipe | strength | warm-up | horror (4 phrasings) | collateral change (clean prompts) | learning s |\n|---|---:|---:|---:|---:|---:|")
    print(f"| plain | - | - | {rows[0]['horror']:.3f} | - | - |", flush=True)
    for recipe in [r.strip() for r in args.recipes.split(",") if r.strip()]:
        t0 = time.perf_counter()
        learn = LearnConfig("horror=false", positive=NEUTRAL, negative=HORROR, neutral=RECIPES[recipe], images=args.images, steps=args.steps)
        direction = learn_direction(pipe, learn, args.cache)
        learned = time.perf_counter() - t0
        for warmup in [int(w) for w in args.warmups.split(",")]:
            for s in [float(x) for x in args.strengths.split(",")]:
                with WarmShift(pipeline_module, warmup):
                    horror = {p: float(np.mean([lab["horror"] for lab in labels(p, [direction.at(s)])])) for p in HORROR_PROMPTS}
                    changed = {p: float(np.mean([[a[k] != b[k] for k in others] for a, b in zip(plain[p], labels(p, [direction.at(s)]))]))
                               for p in CLEAN_PROMPTS}  # fmt: skip
                row = {"recipe": recipe, "strength": s, "warmup": warmup, "horror": float(np.mean(list(horror.values()))),
                       "horror_by_prompt": horror, "collateral": float(np.mean(list(changed.values()))), "collateral_by_prompt": changed,
                       "learning_seconds": round(learned, 1), "norm": float(direction.vector.norm())}  # fmt: skip
                rows.append(row)
                print(f"| {recipe} | {s:g} | {warmup} | {row['horror']:.3f} | {row['collateral']:.3f} | {learned:.0f} |", flush=True)
    report = {"command": "python benchmarks/directions_safety.py " + " ".join(os.sys.argv[1:]), "model": pipeline_fingerprint(pipe),
              "seeds": [seeds[0], seeds[-1]], "horror_prompts": list(HORROR_PROMPTS), "clean_prompts": list(CLEAN_PROMPTS), "rows": rows}  # fmt: skip
    print(f"\n{write_json(args.out, report)}")


if __name__ == "__main__":
    main()
