"""Self-discovered directions on the embedded model: learning time, success rate, cost per image, a strength strip.

Learns one direction (default: bald, from "a face of a bald person" against "a face of a person"), then on
--eval-seeds fresh seeds of the neutral prompt measures the share of images the oracle reads with the concept
at each strength, and times generation with and without the direction side by side (interleaved, median of
--repeats; issue 16's target is a ratio of 1.02 or less). Writes the strength strip as a PNG.

    python benchmarks/directions.py                                   # bald, 64 images, 300 steps
    python benchmarks/directions.py --name woman --positive "a face of a woman" --attribute presentation --value woman
    python benchmarks/directions.py --images 1000 --steps 2500        # the paper's settings
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
from PIL import Image  # noqa: E402

from segakit.core.images import grid, save_png  # noqa: E402
from segakit.directions import LearnConfig, learn_direction  # noqa: E402
from segakit.sega.pipeline import SegaPipeline  # noqa: E402
from segakit.world.oracle import Oracle  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--name", default="bald")
    ap.add_argument("--positive", default="a face of a bald person")
    ap.add_argument("--neutral", default="a face of a person")
    ap.add_argument("--attribute", default="hair_style")
    ap.add_argument("--value", default="bald")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--eval-seeds", type=int, default=64)
    ap.add_argument("--strengths", default="0,0.25,0.5,1,1.5,2")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", default="out/directions-cache")
    ap.add_argument("--out", default="out/bench-directions")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe = SegaPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    oracle = Oracle.load()

    t0 = time.perf_counter()
    cfg = LearnConfig(args.name, positive=args.positive, neutral=args.neutral, images=args.images, steps=args.steps)
    d = learn_direction(pipe, cfg, args.cache)
    learn_s = time.perf_counter() - t0
    os.makedirs(args.out, exist_ok=True)
    d.save(os.path.join(args.out, f"{args.name}.safetensors"))

    def sample(strength: float, n: int, first: int = 50_000):
        gens = [torch.Generator().manual_seed(first + i) for i in range(n)]
        return pipe(args.neutral, num_inference_steps=25, num_images_per_prompt=n, generator=gens,
                    directions=[d.at(strength)] if strength else [], output_type="pt").images  # fmt: skip

    print(f"model {args.model}; direction {args.name!r}: {args.images} images ({d.meta['seconds_generating']:.0f} s, "
          f"0 if cached), {args.steps} steps ({d.meta['seconds_learning']:.0f} s); {learn_s:.0f} s in all; "
          f"loss {d.meta['first_loss']:.4f} -> {d.meta['final_loss']:.4f}; {args.threads} threads")  # fmt: skip
    strengths = [float(s) for s in args.strengths.split(",")]
    strip = []
    for s in strengths:
        images = sample(s, args.eval_seeds)
        share = (
            sum(str(lab[args.attribute]).lower() == args.value.lower() for lab in oracle.predict(images))
            / args.eval_seeds
        )
        print(f"  strength {s:4g}: {args.attribute} = {args.value} in {share:.3f} of {args.eval_seeds} neutral images")
        strip.extend(images[:4])
    pils = [Image.fromarray((im.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype("uint8")) for im in strip]
    # rows: 4 seeds; columns: the strengths (the images were collected strength by strength)
    by_seed = [pils[k * 4 + r] for r in range(4) for k in range(len(strengths))]
    sheet = grid(by_seed, cols=len(strengths), labels=[f"{args.name} {s:g}" for s in strengths] * 4, scale=2)
    path = save_png(
        sheet, os.path.join(args.out, f"strip-{args.name}.png"), {"direction": args.name, "strengths": strengths}
    )
    print(f"  strength strip: {path}")

    sample(1.0, 16)  # warm-up
    plain, steered = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        sample(0.0, 16)
        plain.append(time.perf_counter() - t)
        t = time.perf_counter()
        sample(1.0, 16)
        steered.append(time.perf_counter() - t)
    p, s = statistics.median(plain), statistics.median(steered)
    print(f"  16 images x 25 steps: plain {p:.2f} s, with the direction {s:.2f} s: ratio {s / p:.3f} (target <= 1.02)")


if __name__ == "__main__":
    main()
