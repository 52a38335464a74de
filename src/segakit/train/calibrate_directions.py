"""Recipe: calibrate a direction library's fair generation for one attribute (segakit's addition to the paper).

For every candidate recipe (each of the attribute's directions alone at each ``--strengths``, and with
``--pair_strength`` every two of them together at that strength) it makes ``--seeds`` images of ``--prompt`` from
seeds ``--first_seed`` on (keep them apart from the seeds you evaluate on: the study uses 0..199), reads the
attribute with the faces world's oracle, and keeps for each value the recipe whose images show it most often
(:mod:`segakit.directions.calibrate`). library.json gets ``recipes`` for the values where that is not the value's
own direction at its strength, ``draws`` (unless ``--balance false``) with the shares to draw the values at so
that what the images show comes out even, and ``calibration`` with what was read; fair generation then uses them
(an explicit ``--library-strength`` or explicit shares do not). It works where the oracle reads the attribute: the embedded model's faces world.

    python -m segakit.train.calibrate_directions --attribute skin                 # the shipped library, 32 seeds
    python -m segakit.train.calibrate_directions --attribute skin --library out/lib --seeds 32 --pair_strength 0
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from segakit.core.errors import UserError
from segakit.directions.calibrate import balanced_draw, candidates, choose, expected_shares, share
from segakit.directions.library import Library, key, library_folder
from segakit.train.config import parse_config
from segakit.train.directions import save_index


@dataclass
class CalibrateConfig:
    attribute: str = "skin"
    library: str = ""  # default: segakit/assets/directions
    model: str = "embedded"
    prompt: str = "a face of a person"
    seeds: int = 32
    first_seed: int = 10000  # the study evaluates on 0..199 and benchmarks/directions_fair.py on 7000..
    strengths: str = "0.5,1"
    pair_strength: float = 0.5  # 0: no pairs
    margin: float = 0.1  # a recipe within this share of the best that is simpler wins (32 seeds: a share's noise ~0.08)
    balance: bool = True  # also write the draw shares that even out what the images show (library.json's draws)
    figure: str = (
        ""  # also draw, per value, its own direction's images and the chosen recipe's (same seeds) as a PNG here
    )
    figure_seeds: int = 8
    steps: int = 25
    threads: int = 0


def _strengths(text: str) -> list[float]:
    try:
        out = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UserError(f"--strengths {text!r}: write numbers separated by commas, e.g. 0.5,1.") from None
    if not out or any(s <= 0 for s in out):
        raise UserError(f"--strengths {text!r}: give one or more strengths above 0.")
    return out


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(CalibrateConfig, argv, description=__doc__.splitlines()[0])
    strengths = _strengths(cfg.strengths)
    if cfg.seeds < 1:
        raise UserError(f"--seeds {cfg.seeds}: give 1 or more.")
    folder = library_folder(cfg.library or None, cfg.model, "python -m segakit.train.calibrate_directions needs")
    lib = Library.load(folder)
    values = lib.values(cfg.attribute)
    if len(values) < 2:
        raise UserError(f"--attribute {cfg.attribute!r}: the library has directions for {len(values)} of its values; "
                        f"calibration needs two or more ({', '.join(lib.fair_attributes()) or 'none has'}).")  # fmt: skip
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    from segakit.sega.pipeline import SegaPipeline
    from segakit.world.oracle import Oracle

    pipe = SegaPipeline.from_pretrained(cfg.model)
    pipe.set_progress_bar_config(disable=True)
    lib.check_model(pipe.family.denoiser)
    oracle = Oracle.load()
    names = [key(cfg.attribute, v) for v in values]
    recipes = candidates(names, strengths, cfg.pair_strength or None)
    t0 = time.perf_counter()
    reads: dict = {}
    shown: dict = {}  # the first images of each recipe, for --figure
    for k, recipe in enumerate(recipes):
        gens = [torch.Generator().manual_seed(cfg.first_seed + i) for i in range(cfg.seeds)]
        images = pipe(cfg.prompt, num_inference_steps=cfg.steps, num_images_per_prompt=cfg.seeds, generator=gens,
                      directions=[lib.direction(n).at(s) for n, s in recipe], output_type="pt").images  # fmt: skip
        reads[recipe] = [key(cfg.attribute, lab[cfg.attribute]).split("=", 1)[1] for lab in oracle.predict(images)]
        shown[recipe] = images[: cfg.figure_seeds].cpu()
        print(f"[{k + 1}/{len(recipes)}] {' + '.join(f'{n}@{s:g}' for n, s in recipe)}: "
              + ", ".join(f"{v} {share(reads[recipe], v):.2f}" for v in values), flush=True)  # fmt: skip
    own = {v: ((key(cfg.attribute, v), lib.strength_of(key(cfg.attribute, v))),) for v in values}
    chosen = choose(reads, values, cfg.margin, prefer=own)
    own_reads = {v: share(reads[own[v]], v) if own[v] in reads else None for v in values}
    plan = {v: r for v, (r, _) in chosen.items()}
    summary = {
        "attribute": cfg.attribute, "prompt": cfg.prompt, "seeds": cfg.seeds, "first_seed": cfg.first_seed,
        "candidates": len(recipes), "margin": cfg.margin, "seconds": round(time.perf_counter() - t0, 1),
        "chosen": {v: {"recipe": [list(p) for p in r], "shows_value": round(s, 3)} for v, (r, s) in chosen.items()},
        "own_direction_shows_value": own_reads,
        "expected_shares": {w: round(x, 3) for w, x in expected_shares(plan, reads, values).items()},
        "draw": None,
        "reads": {" + ".join(f"{n}@{x:g}" for n, x in r): {v: reads[r].count(v) for v in sorted(set(values) | set(reads[r]))}
                  for r in recipes},  # fmt: skip
        "command": " ".join(["python -m segakit.train.calibrate_directions", *(sys.argv[1:] if argv is None else argv)]),
    }  # fmt: skip
    if cfg.balance:
        draw = balanced_draw(plan, reads, values)
        summary["draw"] = {v: round(p, 4) for v, p in draw.items()}
        summary["expected_shares_balanced"] = {
            w: round(x, 3) for w, x in expected_shares(plan, reads, values, draw).items()
        }
    index_path = folder / "library.json"
    index = json.loads(index_path.read_text())
    kept = {n: r for n, r in index.get("recipes", {}).items() if n.split("=", 1)[0] != cfg.attribute}
    kept.update({key(cfg.attribute, v): [list(p) for p in r] for v, r in plan.items() if r != own[v]})
    index["recipes"] = kept
    index.setdefault("calibration", {})[cfg.attribute] = summary
    draws = index.setdefault("draws", {})
    draws.pop(cfg.attribute, None)
    if summary["draw"]:
        draws[cfg.attribute] = summary["draw"]
    save_index(index_path, index)
    for v, (r, s) in chosen.items():
        was = f"{own_reads[v]:.2f}" if own_reads[v] is not None else "-"
        print(
            f"{key(cfg.attribute, v)}: {' + '.join(f'{n}@{x:g}' for n, x in r)} shows it in {s:.2f} (its own direction {was})"
        )
    print(
        "expected shares with equal draws: " + ", ".join(f"{w} {x:.2f}" for w, x in summary["expected_shares"].items())
    )
    if summary["draw"]:
        print("balanced draw: " + ", ".join(f"{v} {p:.3f}" for v, p in summary["draw"].items()) + "; expected shares then: "
              + ", ".join(f"{w} {x:.2f}" for w, x in summary["expected_shares_balanced"].items()))  # fmt: skip
    print(f"wrote {index_path}")
    if cfg.figure:
        print(f"wrote {_figure(Path(cfg.figure), shown, own, plan, reads, values)}")
    return summary


def _figure(path: Path, shown: dict, own: dict, plan: dict, reads: dict, values: list[str]) -> Path:
    """Two rows per value: its own direction's images, then the chosen recipe's (the same seeds), each labelled with
    the share of all calibration images that show the value."""
    from PIL import Image

    from segakit.core.images import grid, save_png

    def pil(x: torch.Tensor) -> Image.Image:
        return Image.fromarray((x.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype("uint8"))

    images, rows = [], []
    for v in values:
        for label, recipe in (("own", own[v]), ("calibrated", plan[v])):
            images += [pil(x) for x in shown[recipe]]
            parts = " + ".join(f"{n.split('=', 1)[1]}@{x:g}" for n, x in recipe)
            rows.append(f"{v}, {label}: {parts} ({share(reads[recipe], v):.2f})")
    return save_png(grid(images, len(next(iter(shown.values()))), row_labels=rows, scale=2), path)


if __name__ == "__main__":
    try:
        main()
    except UserError as exc:  # one sentence, exit 2, as the CLI does
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(2)
