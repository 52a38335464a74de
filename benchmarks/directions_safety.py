"""The anti-horror direction: which learning recipe removes horror, at which strength, and what it does to the image.

Learns the anti-horror direction with each recipe, then at each strength measures, side by side on the same seeds: the share
of images the oracle reads as horror on the four horror phrasings of the directions study, and on the two clean
prompts the share of the other attributes the direction changes against the plain image of the same seed (the
study's collateral change) and the SSIM to it. The oracle reads every image, even one the direction has broken
(a broken zombie is "not horror"), so the SSIM column and the strip PNG (``--strip``: "a zombie", 6 seeds, one row
per recipe and strength) are the check that a removal is a face without horror and not a ruin. Prints one
table; `--out` writes it as JSON.

    python benchmarks/directions_safety.py --seeds 16 --strengths 0.5,1,2,3 --out docs/results/directions/safety-recipes.json \
        --strip docs/img/anti-horror-strip.png
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
from segakit.core.images import grid, save_png  # noqa: E402
from segakit.directions import LearnConfig, learn_direction  # noqa: E402
from segakit.eval.directions_study.config import CLEAN_PROMPTS, HORROR_PROMPTS  # noqa: E402
from segakit.eval.embedded_quality import to_pil  # noqa: E402
from segakit.eval.ssim import ssim  # noqa: E402
from segakit.sega.guidance import Edit  # noqa: E402
from segakit.sega.pipeline import SegaPipeline  # noqa: E402
from segakit.world.oracle import Oracle  # noqa: E402
from segakit.world.schema import ATTRIBUTES  # noqa: E402

NEUTRAL, HORROR = "a face of a person", "a zombie"
# recipe -> (the images: positive prompt, negative prompt, SEGA edits; the prompt the U-Net is conditioned on)
RECIPES = {
    # the paper's anti-concept: clean faces from the neutral prompt with the concept as the negative, learned on it
    "paper": ((NEUTRAL, HORROR, ()), NEUTRAL),
    # the same clean faces, the U-Net conditioned on the horror prompt (measured and withdrawn: it removes horror by
    # breaking the image)
    "horror-conditioned": ((NEUTRAL, HORROR, ()), HORROR),
    # segakit's: faces drawn from the horror prompt with a SEGA reverse edit of it (so the images keep the horror
    # prompt's composition and only lose the horror), the U-Net conditioned on the horror prompt
    "sega-cleaned": ((HORROR, None, (Edit(HORROR, reverse=True),)), HORROR),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", default="paper,horror-conditioned")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--strengths", default="0.5,1,2,3")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", default="runs/directions-cache")
    ap.add_argument("--out", type=Path, default=Path("out/directions-safety.json"))
    ap.add_argument(
        "--strip",
        type=Path,
        default=None,
        help="also draw 'a zombie' for the first 6 seeds per recipe and strength (PNG)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe = SegaPipeline.from_pretrained("embedded")
    pipe.set_progress_bar_config(disable=True)
    oracle = Oracle.load()
    seeds = list(range(args.seeds))
    others = [a for a in ATTRIBUTES if a != "horror"]

    def images(prompt: str, directions: list) -> torch.Tensor:
        return pipe(prompt, num_inference_steps=25, guidance_scale=7.5, num_images_per_prompt=len(seeds), directions=directions,
                    generator=[torch.Generator().manual_seed(s) for s in seeds], output_type="pt").images.float().clamp(0, 1)  # fmt: skip

    plain_images = {p: images(p, []) for p in (*HORROR_PROMPTS, *CLEAN_PROMPTS)}
    plain = {p: oracle.predict(x) for p, x in plain_images.items()}
    shown = min(6, len(seeds))  # the strip: the first seeds of "a zombie", one row per recipe and strength
    strip, strip_labels = [plain_images[HORROR][:shown]], ["plain"]
    rows = [
        {
            "recipe": "plain",
            "strength": 0.0,
            "horror": float(np.mean([lab["horror"] for p in HORROR_PROMPTS for lab in plain[p]])),
        }
    ]
    print(
        "| recipe | strength | horror (4 phrasings) | collateral change (clean prompts) | SSIM to plain (clean prompts) | "
        "SSIM to plain (horror prompts) | learning s |\n|---|---:|---:|---:|---:|---:|---:|"
    )
    print(f"| plain | - | {rows[0]['horror']:.3f} | - | - | - | - |", flush=True)
    for recipe in [r.strip() for r in args.recipes.split(",") if r.strip()]:
        t0 = time.perf_counter()
        (positive, negative, edits), conditioned = RECIPES[recipe]
        learn = LearnConfig("horror=false", positive=positive, negative=negative, edits=edits, neutral=conditioned, images=args.images,
                            steps=args.steps)  # fmt: skip
        direction = learn_direction(pipe, learn, args.cache)
        learned = time.perf_counter() - t0
        for s in [float(x) for x in args.strengths.split(",")]:
            made = {p: images(p, [direction.at(s)]) for p in (*HORROR_PROMPTS, *CLEAN_PROMPTS)}
            strip.append(made[HORROR][:shown])
            strip_labels.append(f"{recipe} {s:g}")
            read = {p: oracle.predict(x) for p, x in made.items()}
            horror = {p: float(np.mean([lab["horror"] for lab in read[p]])) for p in HORROR_PROMPTS}
            changed = {
                p: float(np.mean([[a[k] != b[k] for k in others] for a, b in zip(plain[p], read[p])]))
                for p in CLEAN_PROMPTS
            }
            kept = {p: float(ssim(made[p], plain_images[p]).mean()) for p in CLEAN_PROMPTS}
            horror_ssim = float(np.mean([float(ssim(made[p], plain_images[p]).mean()) for p in HORROR_PROMPTS]))
            row = {"recipe": recipe, "strength": s, "horror": float(np.mean(list(horror.values()))),
                   "horror_by_prompt": horror, "collateral": float(np.mean(list(changed.values()))), "collateral_by_prompt": changed,
                   "collateral_ssim": float(np.mean(list(kept.values()))), "horror_prompt_ssim": horror_ssim,
                   "learning_seconds": round(learned, 1), "norm": float(direction.vector.norm())}  # fmt: skip
            rows.append(row)
            print(f"| {recipe} | {s:g} | {row['horror']:.3f} | {row['collateral']:.3f} | {row['collateral_ssim']:.3f} | "
                  f"{horror_ssim:.3f} | {learned:.0f} |", flush=True)  # fmt: skip
    report = {"command": "python benchmarks/directions_safety.py " + " ".join(os.sys.argv[1:]), "model": pipeline_fingerprint(pipe),
              "seeds": [seeds[0], seeds[-1]], "horror_prompts": list(HORROR_PROMPTS), "clean_prompts": list(CLEAN_PROMPTS), "rows": rows}  # fmt: skip
    print(f"\n{write_json(args.out, report)}")
    if args.strip is not None:
        pictures = [im for batch in strip for im in to_pil(batch)]
        figure = grid(pictures, cols=6, row_labels=strip_labels, scale=2)
        print(save_png(figure, args.strip, {"command": report["command"], "prompt": HORROR, "seeds": seeds[:shown]}))


if __name__ == "__main__":
    main()
