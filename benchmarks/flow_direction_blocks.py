"""Which joint block of a flow transformer self-discovered directions should live in: learn one per block, then read
what each does with the oracle.

For every joint block of the model (``transformer_blocks.0`` .. ``N-1``) and every concept, a direction is learned
at that block from the model's own images (the same cached images for every block) with segakit's rectified-flow
loss, then applied at each strength to held-out seeds (seeds 10,000 on, never used for learning) of the neutral
prompt and of a second prompt (transfer). The oracle reads every image. Per block and strength it prints:

- success: the share of seeds lacking the concept in the plain image that show it with the direction;
- isolation: the share of the other attributes the oracle reads unchanged (as the SEGA study measures it);
- the same success on the transfer prompt;

and then, per concept and block, the isolation at a given success (``--at``, 90%): directions at different blocks
need different strengths for the same effect, so blocks are compared where they reach the same success.

    python benchmarks/flow_direction_blocks.py --threads 1 --strengths 0.02,0.05,0.1   # embedded-flow, woman and glasses
    python benchmarks/flow_direction_blocks.py --model FOLDER --seeds 64 --strengths 0.5,1,1.5
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

from segakit import SegaPipeline  # noqa: E402
from segakit.directions.learn import LearnConfig, learn_direction  # noqa: E402
from segakit.eval.embedded_quality import sample_images  # noqa: E402
from segakit.eval.isolation import isolation  # noqa: E402
from segakit.eval.targets import GLASSES, WOMAN  # noqa: E402
from segakit.world.oracle import Oracle  # noqa: E402

CONCEPTS = {"woman": (WOMAN, "a face of a woman"), "glasses": (GLASSES, "a face of a person wearing glasses")}
NEUTRAL, TRANSFER = "a face of a person", "a portrait of a smiling person"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded-flow")
    ap.add_argument("--concepts", default="woman,glasses")
    ap.add_argument("--images", type=int, default=64, help="images each direction is learned from")
    ap.add_argument("--learn-steps", type=int, default=200)
    ap.add_argument("--seeds", type=int, default=48, help="held-out seeds each direction is read on, per prompt")
    ap.add_argument("--strengths", default="0.02,0.05,0.1")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--cache", default=None, help="folder for the learning images (default: a temporary one)")
    ap.add_argument("--at", type=float, default=0.9, help="success level the isolation summary compares blocks at")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe = SegaPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    blocks = len(pipe.family.denoiser.transformer_blocks)
    oracle = Oracle.load()
    seeds = list(range(10_000, 10_000 + args.seeds))
    strengths = [float(s) for s in args.strengths.split(",")]

    def read(prompt: str, directions=()) -> list[dict]:
        images = sample_images(pipe, prompt, seeds, args.steps, args.guidance, 16, directions=list(directions))
        return oracle.predict(images)

    plain = {p: read(p) for p in (NEUTRAL, TRANSFER)}
    cache = args.cache or tempfile.mkdtemp(prefix="flow-blocks-")
    curve: dict[tuple[str, int], list[tuple[float, float]]] = {}  # (concept, block) -> (success, isolation) by strength
    print(f"model {args.model}; {blocks} joint blocks; learned from {args.images} images, {args.learn_steps} steps; "
          f"read on {args.seeds} held-out seeds per prompt")  # fmt: skip
    print("| concept | block | strength | success | isolation | success on the transfer prompt | learn s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.concepts.split(","):
        target, positive = CONCEPTS[name]
        for block in range(blocks):
            cfg = LearnConfig(name=name, positive=positive, neutral=NEUTRAL, images=args.images, steps=args.learn_steps,
                              gen_steps=args.steps, guidance=args.guidance, site=f"transformer_blocks.{block}")  # fmt: skip
            start = time.perf_counter()
            direction = learn_direction(pipe, cfg, cache)
            seconds = time.perf_counter() - start
            for strength in strengths:
                cells = []
                for prompt in (NEUTRAL, TRANSFER):
                    edited = read(prompt, [direction.at(strength)])
                    lacking = [i for i, lab in enumerate(plain[prompt]) if not target.achieved(lab)]
                    hit = sum(target.achieved(edited[i]) for i in lacking) / max(len(lacking), 1)
                    iso = isolation([plain[prompt][i] for i in lacking], [edited[i] for i in lacking], [target])
                    cells.append((hit, iso["unchanged"], len(lacking)))
                (s, iso, n), (s2, _, n2) = cells
                curve.setdefault((name, block), []).append((s, iso))
                print(f"| {name} | {block} | {strength:g} | {s:.0%} of {n} | {iso:.0%} | {s2:.0%} of {n2} | {seconds:.0f} |",
                      flush=True)  # fmt: skip
    print(f"\nIsolation at {args.at:.0%} success (linear between the strengths around it; '-' where none brackets it):")
    print("| concept | " + " | ".join(f"block {b}" for b in range(blocks)) + " |")
    print("|---|" + "---:|" * blocks)
    for name in args.concepts.split(","):
        cells = [at_success(curve[(name, b)], args.at) for b in range(blocks)]
        print(f"| {name} | " + " | ".join("-" if c is None else f"{c:.0%}" for c in cells) + " |")


def at_success(points: list[tuple[float, float]], level: float) -> float | None:
    """Isolation where success crosses ``level``, interpolated between the (success, isolation) points around it
    (points in order of strength)."""
    for (s0, i0), (s1, i1) in zip(points, points[1:]):
        if s0 <= level <= s1 and s1 > s0:
            return i0 + (i1 - i0) * (level - s0) / (s1 - s0)
        if s0 == level:
            return i0
    return points[-1][1] if points and points[-1][0] == level else None


if __name__ == "__main__":
    main()
