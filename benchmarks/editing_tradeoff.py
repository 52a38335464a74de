"""Pix2Pix-OnTheFly's speed/success trade-off on the embedded model, settings measured side by side in one run.

The paper's recipe (100 DDIM inversion steps with pix2pix-zero's noise regularisation, then 100 edit steps, each
with a backward pass for the cross-attention guidance) is the reference; each other setting is timed on the same
pairs in the same process, interleaved pair by pair (so a busy machine slows every setting alike), and reported
as its success, the share of the other attributes unchanged, seconds per edit and its speed-up over the paper's
recipe. Captions are the gold ones (the caption writer's time is reported by ``segakit eval caption-writer``).

    python benchmarks/editing_tradeoff.py --pairs 24 --out docs/results/editing/tradeoff.json
    python benchmarks/editing_tradeoff.py --pairs 4 --settings paper,25-noreg     # a quick look

A setting is ``STEPS[-noreg][-xaX][-ddpm[G]][-mQ]``: e.g. ``25``, ``10-noreg``, ``25-xa0.3``; ``paper`` is ``100``;
``25-ddpm`` is segakit's variant (``segakit edit --inversion ddpm``: the edit direction on an edit-friendly DDPM
inversion at its default guidance 3.5, no mask; G as in ``25-ddpm5`` sets the guidance, ``-mQ`` LEDITS++'s noise
mask at quantile Q, as in ``25-ddpm5-m0.95``).

    python benchmarks/editing_tradeoff.py --pairs 24 --settings paper,25-ddpm,50-ddpm,25-ddpm4 --out docs/results/editing/tradeoff-d.json
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

from segakit.core.atomic import write_json  # noqa: E402
from segakit.core.errors import UserError  # noqa: E402
from segakit.core.fingerprint import pipeline_fingerprint  # noqa: E402
from segakit.editing.params import default_guidance  # noqa: E402
from segakit.editing.pipeline import EditPipeline  # noqa: E402
from segakit.eval.editing_study.items import pair_turn, single_change_pairs  # noqa: E402
from segakit.eval.editing_study.metrics import attribute_scores  # noqa: E402
from segakit.world.oracle import Oracle  # noqa: E402
from segakit.world.schema import ATTRIBUTES  # noqa: E402

DEFAULT_SETTINGS = "paper,50,25,25-noreg,10-noreg"


def parse_setting(text: str) -> dict:
    """``"25-noreg-xa0.3"`` -> {"steps": 25, "regularize": False, "xa_guidance": 0.3, ...}; ``"paper"``: 100 steps."""
    parts = ("100" + text[5:] if text.startswith("paper") else text).split("-")
    try:
        out = {
            "steps": int(parts[0]),
            "regularize": True,
            "xa_guidance": 0.15,
            "inversion": "ddim",
            "guidance": 5.0,
            "mask": 0.0,
        }
        for p in parts[1:]:
            if p.startswith("ddpm"):
                g = float(p[4:]) if p[4:] else default_guidance("onthefly", "ddpm")
                out.update(inversion="ddpm", guidance=g)
            elif p.startswith("m") and out["inversion"] == "ddpm":
                out["mask"] = float(p[1:])
            elif p == "noreg":
                out["regularize"] = False
            elif p.startswith("xa"):
                out["xa_guidance"] = float(p[2:])
            else:
                raise ValueError(p)
    except ValueError:
        raise UserError(
            f"--settings has {text!r}; write STEPS[-noreg][-xaX][-ddpm[G][-mQ]], e.g. 25-noreg, 25-ddpm or paper."
        ) from None
    if not 1 <= out["steps"] <= 1000:
        raise UserError(f"--settings has {text!r}: steps outside 1..1000.")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=24)
    ap.add_argument("--settings", default=DEFAULT_SETTINGS)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("out/editing-tradeoff.json"))
    args = ap.parse_args()
    names = [s.strip() for s in args.settings.split(",") if s.strip()]
    settings = {n: parse_setting(n) for n in names}
    torch.set_num_threads(args.threads)
    pipe = EditPipeline.from_pretrained("embedded", caption_writer=None)
    oracle = Oracle.load()
    turns = [pair_turn(p) for p in single_change_pairs(args.pairs, 0)]
    rows: dict[str, list[dict]] = {n: [] for n in names}
    for k, turn in enumerate(turns):
        src = oracle.predict([turn.source_image])[0]
        for name in names:  # interleaved: every setting edits this pair before the next pair
            s = settings[name]
            start = time.perf_counter()
            out = pipe(turn.input_image, turn.instruction, source_caption=turn.source_caption, target_captions=[turn.target_caption],
                       num_inference_steps=s["steps"], regularize=s["regularize"], cross_attention_guidance=s["xa_guidance"], seed=0,
                       inversion=s["inversion"], guidance_scale=s["guidance"], mask=s["mask"])  # fmt: skip
            seconds = time.perf_counter() - start
            got = oracle.predict([out.images[0]])[0]
            scores = attribute_scores(src, got, turn.changes, [a for a in ATTRIBUTES if a not in turn.changes])
            rows[name].append({"item": turn.item, "seconds": round(seconds, 3), **scores})
        print(f"pair {k + 1}/{len(turns)} done", flush=True)
    paper = names[0]
    base = sum(r["seconds"] for r in rows[paper]) / len(turns)
    summary = {}
    print(f"\n| setting | success | others unchanged | s / edit | speed-up over {paper} |\n|---|---|---|---|---|")
    for name in names:
        r = rows[name]
        sec = sum(x["seconds"] for x in r) / len(r)
        summary[name] = {**settings[name], "success": sum(x["success"] for x in r) / len(r),
                         "others_unchanged": sum(x["others_unchanged"] for x in r) / len(r), "seconds": sec, "speedup": base / sec}  # fmt: skip
        m = summary[name]
        print(
            f"| {name} | {m['success']:.3f} ({int(round(m['success'] * len(r)))}/{len(r)}) | {m['others_unchanged']:.3f} | {sec:.2f} | {m['speedup']:.1f}x |"
        )
    report = {"command": "python benchmarks/editing_tradeoff.py " + " ".join(os.sys.argv[1:]), "model": pipeline_fingerprint(pipe),
              "pairs": [t.item for t in turns], "torch_threads": args.threads, "summary": summary, "rows": rows}  # fmt: skip
    print(f"\n{write_json(args.out, report)}")


if __name__ == "__main__":
    main()
