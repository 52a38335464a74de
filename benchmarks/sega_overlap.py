"""Where on the latent each concept of a four-edit combination acts, and which concepts override which.

``sega_combinations.py`` says which edits a combination loses; this benchmark says why, step by step. It runs the
combination (glasses + smile + curls + beard by default) at each model's edit defaults on the seeds of
``sega_combinations.py`` and, at every step where all the concepts act, reads each concept's guidance after
SEGA's threshold (``psi_k``, its kept tail) and prints per model:

- **share**: the concept's part of the summed guidance, mean |psi_k| over the sum of the four;
- **overlap**: of the latent elements the concept keeps, the share another concept also keeps;
- **overridden**: of the elements the concept keeps, the share where the other concepts' sum points the other way
  and is larger, so the applied guidance there works against the concept;
- **reach**: how far from its own region the concept acts, the share of its kept elements outside the latent
  rows/columns where it is kept most often (the top quarter of its heat map).

``--figure PATH`` writes the heat maps (how often each latent position is kept, per concept and model) as a PNG.

    python benchmarks/sega_overlap.py --models embedded-flow,embedded --seeds 16
    python benchmarks/sega_overlap.py --models embedded-flow --combination 2 --figure overlap.png
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

from segakit.core.atomic import atomic_open  # noqa: E402
from segakit.core.errors import UserError  # noqa: E402
from segakit.core.outputs import plan_file  # noqa: E402
from segakit.eval.embedded_quality import sample_images  # noqa: E402
from segakit.eval.targets import COMBINATIONS  # noqa: E402
from segakit.sega import guidance as sega_guidance  # noqa: E402
from segakit.sega.guidance import Edit, concept_direction, keep_tails  # noqa: E402
from segakit.sega.pipeline import SegaPipeline  # noqa: E402
from segakit.world.oracle import Oracle  # noqa: E402

FIRST_SEED = 600_000  # sega_combinations.py's seeds
PROMPT = "a face of a person"


@contextlib.contextmanager
def recording(steps: list[torch.Tensor]):
    """Append, at each step where every concept acts, the kept tails psi_k stacked (K, B, C, H, W) to ``steps``."""
    original = sega_guidance.SemanticGuidance.__call__

    def call(self, step, e0, estimates):
        out = original(self, step, e0, estimates)
        if all(e.warmed_up(step) and e.alive(step) for e in self.edits) and len(estimates) == len(self.edits):
            psis = [
                keep_tails(concept_direction(estimates[k], e0, e.scale, e.reverse), e.threshold, self.quantile_over)
                for k, e in enumerate(self.edits)
            ]
            steps.append(torch.stack(psis).float())
        return out

    sega_guidance.SemanticGuidance.__call__ = call
    try:
        yield
    finally:
        sega_guidance.SemanticGuidance.__call__ = original


def measures(psis: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per concept (K,): share, overlap, overridden, reach of kept tails ``psis`` (N, K, B, C, H, W), N steps."""
    kept = psis != 0
    mag = psis.abs()
    k = psis.shape[1]
    share = mag.mean(dim=(0, 2, 3, 4, 5))
    share = share / share.sum()
    others = psis.sum(dim=1, keepdim=True) - psis
    any_other = kept.sum(dim=1, keepdim=True) - kept.int() > 0
    n_kept = kept.sum(dim=(0, 2, 3, 4, 5)).clamp(min=1)
    overlap = (kept & any_other).sum(dim=(0, 2, 3, 4, 5)) / n_kept
    against = kept & (torch.sign(others) == -torch.sign(psis)) & (others.abs() > mag)
    overridden = against.sum(dim=(0, 2, 3, 4, 5)) / n_kept
    heat = kept.float().mean(dim=(0, 2, 3))  # (K, H, W)
    reach = torch.empty(k)
    for i in range(k):
        top = heat[i] >= heat[i].flatten().quantile(0.75)
        reach[i] = (kept[:, i] & ~top).sum() / n_kept[i]
    return {"share": share, "overlap": overlap, "overridden": overridden, "reach": reach, "heat": heat}


def figure(path: Path, heats: dict[str, torch.Tensor], names: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(heats), len(names), figsize=(2.2 * len(names), 2.3 * len(heats)), squeeze=False)
    for r, (model, heat) in enumerate(heats.items()):
        for c, name in enumerate(names):
            ax = axes[r][c]
            ax.imshow(heat[c].numpy(), cmap="magma", vmin=0, vmax=float(heat.max()))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(name if r == 0 else "", fontsize=10)
            if c == 0:
                ax.set_ylabel(model, fontsize=9)
    fig.suptitle("how often SEGA keeps each latent position (steps where all four act)", fontsize=10)
    fig.tight_layout()
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="embedded-flow,embedded")
    ap.add_argument("--combination", type=int, choices=(1, 2), default=1)
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--setting", default="", help="SCALE:THRESHOLD:WARMUP for every model (default: each model's own)")
    ap.add_argument("--figure", type=Path, default=None, help="PNG of the heat maps (never replaces a file)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if not 1 <= args.seeds <= 1000:
        ap.exit(2, f"--seeds {args.seeds} is outside 1..1000.\n")
    if args.figure is not None:
        try:
            plan_file(args.figure, ".png", "--figure")
        except UserError as err:
            ap.exit(2, f"{err}\n")
    try:
        setting = [float(v) for v in args.setting.split(":")] if args.setting else None
        if setting is not None and (len(setting) != 3 or not 0 <= setting[1] < 1 or setting[2] != int(setting[2])):
            raise ValueError
    except ValueError:
        ap.exit(
            2, f"--setting {args.setting!r} is not SCALE:THRESHOLD:WARMUP with a threshold in [0, 1), e.g. 8:0.9:3.\n"
        )
    torch.set_num_threads(args.threads)
    combo = COMBINATIONS[args.combination - 1]
    names = [t.name for t in combo]
    oracle = Oracle.load()
    seeds = list(range(FIRST_SEED, FIRST_SEED + args.seeds))
    at = "each model's edit defaults" if setting is None else f"every model at {args.setting}"
    print(f"{' + '.join(names)}: {len(seeds)} seeds of {PROMPT!r} from {FIRST_SEED}, 25 steps, guidance 7.5, {at}")
    heats = {}
    t0 = time.perf_counter()
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        pipe = SegaPipeline.from_pretrained(model)
        pipe.set_progress_bar_config(disable=True)
        if setting is not None:
            pipe.edit_defaults = Edit(scale=setting[0], threshold=setting[1], warmup=int(setting[2]))
        d = pipe.edit_defaults
        edits = [Edit(prompt=t.prompt, reverse=t.remove) for t in combo]
        steps: list[torch.Tensor] = []
        with recording(steps):
            images = sample_images(pipe, PROMPT, seeds, 25, 7.5, 8, edits)
        labels = oracle.predict(images)
        success = [sum(t.achieved(lab) for lab in labels) / len(labels) for t in combo]
        every = sum(all(t.achieved(lab) for t in combo) for lab in labels) / len(labels)
        # steps arrive batch by batch; stack each batch's steps, then join the batches along the image axis
        per_batch = len(steps) // ((len(seeds) + 7) // 8)
        psis = torch.cat([torch.stack(steps[i : i + per_batch]) for i in range(0, len(steps), per_batch)], dim=2)
        m = measures(psis)
        heats[model] = m["heat"]
        print(f"\n{model} (scale {d.scale:g}, threshold {d.threshold:g}, warm-up {d.warmup}; "
              f"{per_batch} steps with all four acting): all four drawn {every:.3f}")  # fmt: skip
        print("| concept | drawn | share | overlap | overridden | reach |\n|---|---:|---:|---:|---:|---:|")
        for i, name in enumerate(names):
            print(f"| {name} | {success[i]:.3f} | {m['share'][i]:.3f} | {m['overlap'][i]:.3f} | "
                  f"{m['overridden'][i]:.3f} | {m['reach'][i]:.3f} |")  # fmt: skip
    if args.figure is not None:
        figure(args.figure, heats, names)
        print(f"\nwrote {args.figure}")
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
