"""Pix2Pix-OnTheFly on the embedded model: how often the oracle reads the instructed change, on faces-world pairs.

For each single-change edit pair of ``segakit world pairs`` (seed 0, pairs in index order): invert the source
render with its gold source caption, edit with the gold captions as the before/after sets (the caption writer
for the embedded model is not trained yet), and ask the oracle. Reports success (the oracle reads the new value
of the instructed attribute on the edit), the oracle's reading of that attribute on the reconstruction (what
inversion alone keeps), the share of the other attributes read as on the source, and wall time. Writes a JSON
summary and a before/after figure (source | reconstruction | edit | target per row).

    python benchmarks/editing_onthefly.py --pairs 6 --steps 10 --out docs/results/editing

This is the quick check of issue 17's first part; the full study is ``segakit eval editing`` (MagicBrush's metrics,
diffusers' LEDITS++ beside it, multi-turn; docs/editing.md).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from segakit.core.atomic import atomic_open  # noqa: E402
from segakit.core.fingerprint import pipeline_fingerprint  # noqa: E402
from segakit.core.loading import load_pipeline  # noqa: E402
from segakit.editing.pipeline import EditPipeline  # noqa: E402
from segakit.world.captions import CONCEPTS  # noqa: E402
from segakit.world.oracle import Oracle  # noqa: E402
from segakit.world.pairs import pair_at  # noqa: E402


def figure(rows: list[tuple[Image.Image, ...]], labels: list[str], scale: int = 2) -> Image.Image:
    """A grid: one row per pair (source, reconstruction, edit, target), its instruction written above."""
    size, pad = 64 * scale, 14
    sheet = Image.new("RGB", (4 * size, len(rows) * (size + pad) + pad + 12), "white")
    draw = ImageDraw.Draw(sheet)
    for c, head in enumerate(("source", "inverted", "edited", "target")):
        draw.text((c * size + 2, 0), head, fill="black")
    for r, (row, label) in enumerate(zip(rows, labels)):
        y = pad + r * (size + pad)
        draw.text((2, y), label[:60], fill="black")
        for c, im in enumerate(row):
            sheet.paste(im.resize((size, size), Image.Resampling.NEAREST), (c * size, y + 12))
    return sheet


def gold_concepts(attr: str, old, new) -> list[str]:
    """The change as SEGA concepts in the world's own words: +the new value, -the old one."""
    if isinstance(new, bool):
        return [("+" if new else "-") + CONCEPTS[attr][True][0]]
    words = CONCEPTS[attr]
    return (["+" + words[new][0]] if new in words else []) + (["-" + words[old][0]] if old in words else [])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=6, help="single-change pairs to edit")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0, help="the pairs' seed")
    ap.add_argument("--no-regularize", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--direction-scale", type=float, default=1.0)
    ap.add_argument(
        "--method",
        choices=("onthefly", "sega"),
        default="onthefly",
        help="sega: LEDITS++'s recipe with the world's concept words for the change (+new, -old)",
    )
    ap.add_argument("--figure-rows", type=int, default=8, help="pairs shown in the figure")
    ap.add_argument("--out", type=Path, default=Path("docs/results/editing"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    base = load_pipeline("embedded")
    pipe = EditPipeline.from_pipe(base, model_name="embedded")
    oracle = Oracle.load()
    records, rows, labels = [], [], []
    index = 0
    while len(records) < args.pairs:
        pair = pair_at(args.seed, index)
        index += 1
        if len(pair.changes) != 1:
            continue
        ((attr, (old, new)),) = pair.changes.items()
        start = time.perf_counter()
        out = pipe(pair.source_image, pair.instruction, source_caption=pair.source_caption, target_captions=[pair.target_caption],
                   num_inference_steps=args.steps, regularize=not args.no_regularize, direction_scale=args.direction_scale, seed=0,
                   method=args.method, concepts=gold_concepts(attr, old, new) if args.method == "sega" else None)  # fmt: skip
        seconds = time.perf_counter() - start
        src, rec, ed = oracle.predict([pair.source_image, out.reconstructions[0], out.images[0]])
        others = [a for a in src if a != attr]
        record = {
            "pair": pair.index, "instruction": pair.instruction, "attribute": attr, "from": old, "to": new,
            "source_caption": pair.source_caption, "target_caption": pair.target_caption,
            "success": ed[attr] == new, "reconstruction_keeps": rec[attr] == src[attr],
            "others_unchanged": sum(ed[a] == src[a] for a in others) / len(others), "seconds": round(seconds, 1),
        }  # fmt: skip
        records.append(record)
        rows.append((pair.source_image, out.reconstructions[0], out.images[0], pair.target_image))
        labels.append(f"{pair.instruction} ({attr}: {old} -> {new})")
        print(json.dumps(record), flush=True)

    n = len(records)
    summary = {
        "command": f"python benchmarks/editing_onthefly.py --pairs {args.pairs} --steps {args.steps} --seed {args.seed}"
        + (" --no-regularize" if args.no_regularize else "") + (f" --direction-scale {args.direction_scale:g}" if args.direction_scale != 1 else "")
        + (" --method sega" if args.method == "sega" else ""),
        "method": args.method, "model": "embedded", "model_fingerprint": pipeline_fingerprint(base), "steps": args.steps,
        "regularize": not args.no_regularize, "guidance_scale": 5.0, "xa_guidance": 0.15, "direction_scale": args.direction_scale,
        "captions": "gold (world captions)" if args.method == "onthefly" else "gold concept words",
        **({"skip": 0.15, "threshold": 0.9} if args.method == "sega" else {}),
        "pairs": n, "success": sum(r["success"] for r in records) / n,
        "reconstruction_keeps_attribute": sum(r["reconstruction_keeps"] for r in records) / n,
        "others_unchanged": sum(r["others_unchanged"] for r in records) / n,
        "seconds_per_edit": round(sum(r["seconds"] for r in records) / n, 1), "threads": args.threads, "records": records,
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    tag = (
        f"{args.method}-{args.steps}steps"
        + ("-noreg" if args.no_regularize else "")
        + (f"-dir{args.direction_scale:g}" if args.direction_scale != 1 else "")
    )
    with atomic_open(args.out / f"{tag}.json", "w") as fh:
        json.dump(summary, fh, indent=1)
    sheet = figure(rows[: args.figure_rows], labels[: args.figure_rows])
    with atomic_open(args.out / f"{tag}.png", "wb") as fh:
        sheet.save(fh, format="PNG")
    print(json.dumps({k: v for k, v in summary.items() if k != "records"}))


if __name__ == "__main__":
    main()
