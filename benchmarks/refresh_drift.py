"""How fast guidance directions change from step to step: what concept refresh and CFG refresh rely on.

Runs exact SEGA (every row every step) on the embedded model and records each step's denoiser estimates; a
concept's direction at step i is ``d_i = e_concept - e_uncond`` and classifier-free guidance's is
``e_prompt - e_uncond``. Reusing step j's direction at step i errs by ``|d_i - d_j| / |d_i|`` (relative L2 over
each image's latent, averaged over images and concepts); the script prints that error for a lag of 1..3 steps per
band of steps, and draws it as a curve per lag (PNG).

    python benchmarks/refresh_drift.py --threads 1 --png docs/results/sega-fast/drift.png

A small error late and a large one early argue for a refresh schedule that is dense early and sparse late.
"""

from __future__ import annotations

import argparse
import os
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

from segakit import Edit, SegaPipeline  # noqa: E402

CONCEPTS = ["glasses", "a hat", "smiling", "beard"]


def relative_drift(directions: torch.Tensor, lag: int) -> torch.Tensor:
    """(steps, images, ...) directions -> (steps,) mean relative error of reusing step i - lag's at step i (NaN
    for the first ``lag`` steps)."""
    steps = directions.shape[0]
    flat = directions.flatten(2)
    out = torch.full((steps,), float("nan"))
    for i in range(lag, steps):
        err = (flat[i] - flat[i - lag]).norm(dim=-1) / flat[i].norm(dim=-1).clamp_min(1e-12)
        out[i] = err.mean()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--png", default="", help="write the curves here (refused if the file exists)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe = SegaPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    edits = [Edit(c, warmup=0) for c in CONCEPTS]  # every concept's row from step 0, so every step is recorded
    outputs: list[torch.Tensor] = []
    denoiser = getattr(pipe, "unet", None) or pipe.transformer
    hook = denoiser.register_forward_hook(
        lambda m, a, out: outputs.append((out[0] if isinstance(out, tuple) else out.sample).detach().clone())
    )
    try:
        pipe("a face of a person", edits=edits, num_inference_steps=args.steps, num_images_per_prompt=args.images,
             output_type="latent", generator=torch.Generator().manual_seed(0))  # fmt: skip
    finally:
        hook.remove()
    est = torch.stack([torch.stack(o.chunk(2 + len(edits))) for o in outputs])
    # est: (steps, rows, images, C, H, W): row 0 unconditional, 1 prompt, 2.. concepts
    cfg_dir = est[:, 1] - est[:, 0]
    concept_dir = (est[:, 2:] - est[:, :1]).flatten(1, 2)  # concepts x images as one axis
    lags = (1, 2, 3)
    drift = {
        "concept": {lag: relative_drift(concept_dir, lag) for lag in lags},
        "CFG": {lag: relative_drift(cfg_dir, lag) for lag in lags},
    }
    print(f"model {args.model}; {args.images} images x {args.steps} steps; {len(edits)} concepts; relative error of "
          "reusing the direction from `lag` steps before")  # fmt: skip
    bands = [(a, min(a + 5, args.steps)) for a in range(0, args.steps, 5)]
    print("| direction | lag | " + " | ".join(f"steps {a}-{b - 1}" for a, b in bands) + " |")
    print("|---|---:|" + "---:|" * len(bands))
    for kind, by_lag in drift.items():
        for lag, d in by_lag.items():
            cells = [torch.nanmean(d[a:b]).item() for a, b in bands]
            print(f"| {kind} | {lag} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
        for (kind, by_lag), style in zip(drift.items(), ("-", "--")):
            for lag, d in by_lag.items():
                ax.plot(range(args.steps), d.numpy(), style, label=f"{kind}, lag {lag}")
        ax.set_xlabel("step")
        ax.set_ylabel("relative error of a reused direction")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)
        fig.tight_layout()
        with open(args.png, "xb") as f:
            fig.savefig(f, format="png")
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
