"""Text faithfulness when classifier-free guidance itself is refreshed (``guidance_refresh=G``).

The unconditional estimate is computed every G steps and rebuilt in between as the prompt's estimate plus the last
computed offset (``segakit.sega.guidance.ConceptRefresh``), so the unconditional row leaves the denoiser batch on
the other steps. This measures what that costs in faithfulness: the oracle reads the attribute values named by the
quality table's prompts (``segakit.eval.embedded_quality.text_faithfulness``: 100 prompts x 4 seeds by default),
for each G on the same prompts and seeds, side by side in one run, with each setting's sampling time.

    python benchmarks/guidance_refresh.py --refresh 1,2,3 --threads 1
    python benchmarks/guidance_refresh.py --prompts 25 --prompt-seeds 2    # a quick look

Issue target: within 1 point of exact guidance (G = 1) on the overall share.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

from segakit.eval.embedded_quality import QualityConfig, text_faithfulness  # noqa: E402
from segakit.sega.pipeline import SegaPipeline  # noqa: E402
from segakit.world.oracle import Oracle  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--refresh", default="1,2,3", help="comma-separated G (1 = exact classifier-free guidance)")
    ap.add_argument("--prompts", type=int, default=100)
    ap.add_argument("--prompt-seeds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--out", default="", help="also write the results as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe = SegaPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    oracle = Oracle.load()
    rows = {}
    for g in [int(x) for x in args.refresh.split(",")]:
        cfg = QualityConfig(
            steps=args.steps, n_prompts=args.prompts, prompt_seeds=args.prompt_seeds, guidance_refresh=g
        )
        t = time.perf_counter()
        tf = text_faithfulness(pipe, oracle, cfg)
        rows[g] = {"present": tf["present"], "per_attribute": tf["per_attribute"], "seconds": time.perf_counter() - t}
        print(f"G={g}: faithfulness {tf['present']:.3f} in {rows[g]['seconds']:.0f} s", flush=True)
    base = rows.get(1)
    print(f"\nmodel {args.model}; {args.prompts} prompts x {args.prompt_seeds} seeds; {args.steps} steps; "
          f"threads {torch.get_num_threads()}")  # fmt: skip
    attrs = list(next(iter(rows.values()))["per_attribute"])
    print("| | " + " | ".join(f"G = {g}" for g in rows) + " |")
    print("|---|" + "---:|" * len(rows))
    print("| overall | " + " | ".join(f"{r['present']:.3f}" for r in rows.values()) + " |")
    for a in attrs:
        print(f"| {a} | " + " | ".join(f"{r['per_attribute'][a]:.3f}" for r in rows.values()) + " |")
    if base:
        print(
            "| time over G = 1 | " + " | ".join(f"{r['seconds'] / base['seconds']:.2f}x" for r in rows.values()) + " |"
        )
    if args.out:
        with open(args.out, "x") as f:  # never replaces a file
            json.dump({"args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
