"""Does a model draw one value of an attribute when the prompt names it? Side by side per model, read by the oracle.

The quality table's faithfulness is per attribute, over prompts that name any of its values, so a value the model
seldom draws can hide behind the others (the flow model's expression reads 0.966 there). This benchmark generates
``--seeds`` images of each prompt per model (same seeds, the models' own default guidance, ``--steps`` steps) and
prints how often the oracle reads each value of ``--attribute``: where an edit towards a value keeps missing, it
says whether the model draws that value from text at all (the prior), before an editor's settings are blamed.

    python benchmarks/value_faithfulness.py --models embedded-flow,embedded --threads 1
    python benchmarks/value_faithfulness.py --attribute hair_color --prompts "a face with red hair;a face with gray hair"
    python benchmarks/value_faithfulness.py --prompts "a smiling man with a beard" --figure beard.png --show 8

``--figure PATH`` writes the first ``--show`` images of each prompt and model, titled with the value the oracle read.
"""

from __future__ import annotations

import argparse
import collections
import os
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

from segakit.core.atomic import atomic_open  # noqa: E402
from segakit.core.errors import UserError  # noqa: E402
from segakit.core.outputs import plan_file  # noqa: E402
from segakit.world.oracle import Oracle  # noqa: E402
from segakit.world.schema import ATTRIBUTES  # noqa: E402

EXPRESSION_PROMPTS = ("a portrait of a frowning character;a face with a sad face;a grumpy cook;"
                      "a portrait of a smiling character;a face with a blank expression")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="embedded-flow,embedded")
    ap.add_argument("--attribute", default="expression")
    ap.add_argument("--prompts", default=EXPRESSION_PROMPTS, help="prompts separated by ';'")
    ap.add_argument("--seeds", type=int, default=32)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--figure", type=Path, default=None, help="PNG of the first --show images per prompt and model")
    ap.add_argument("--show", type=int, default=8)
    args = ap.parse_args()
    if args.attribute not in ATTRIBUTES:
        ap.exit(2, f"--attribute {args.attribute!r} is not one of {', '.join(ATTRIBUTES)}.\n")
    if not 1 <= args.seeds <= 1000:
        ap.exit(2, f"--seeds {args.seeds} is outside 1..1000.\n")
    if args.figure is not None:
        try:
            plan_file(args.figure, ".png", "--figure")
        except UserError as err:
            ap.exit(2, f"{err}\n")
        if not 1 <= args.show <= args.seeds:
            ap.exit(2, f"--show {args.show} is outside 1..--seeds ({args.seeds}).\n")
    prompts = [p.strip() for p in args.prompts.split(";") if p.strip()]
    if not prompts:
        ap.exit(2, "--prompts is empty; give prompts separated by ';'.\n")
    torch.set_num_threads(args.threads)
    from segakit import SegaPipeline

    oracle = Oracle.load()
    values = [str(v) for v in ATTRIBUTES[args.attribute]]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    counts: dict[tuple[str, str], collections.Counter] = {}
    shown: list[tuple[str, list, list[str]]] = []
    for model in models:
        pipe = SegaPipeline.from_pretrained(model)
        for prompt in prompts:
            generator = torch.Generator().manual_seed(0)
            images = pipe([prompt] * args.seeds, num_inference_steps=args.steps, generator=generator).images
            read = [str(r[args.attribute]) for r in oracle.predict(images)]
            counts[model, prompt] = collections.Counter(read)
            shown.append((f"{model}\n{prompt}", images[: args.show], read[: args.show]))
            print(f"{model} | {prompt}: {dict(counts[model, prompt])}", flush=True)
    print(f"\n{args.attribute} as the oracle reads it, {args.seeds} seeds a prompt, {args.steps} steps\n")
    print("| prompt | " + " | ".join(models) + " |\n|---|" + "---|" * len(models))
    for prompt in prompts:
        cells = [", ".join(f"{v} {counts[m, prompt][v]}" for v in values if counts[m, prompt][v]) for m in models]
        print(f"| {prompt} | " + " | ".join(cells) + " |")
    if args.figure is not None:
        figure(args.figure, shown)
        print(f"\nwrote {args.figure}")


def figure(path: Path, rows: list[tuple[str, list, list[str]]]) -> None:
    """One row per (model, prompt): its first images, each titled with the value the oracle read."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = max(len(images) for _, images, _ in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.3 * cols + 1.6, 1.45 * len(rows)), squeeze=False)
    for r, (label, images, read) in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(images):
                ax.imshow(images[c])
                ax.set_title(read[c], fontsize=8)
        axes[r][0].text(-0.15, 0.5, label, transform=axes[r][0].transAxes, ha="right", va="center", fontsize=8)
    fig.tight_layout()
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
