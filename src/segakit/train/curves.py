"""Training curves of the embedded model's runs, from each stage's ``metrics.jsonl``, as one PNG.

    python -m segakit.train.curves --out docs/img/embedded-training-curves.png
    python -m segakit.train.curves --stages unet --out docs/img/embedded-unet-continued.png
    python -m segakit.train.curves --runs /work/runs --stages flow --out docs/img/flow-training.png

A run that started from earlier weights (``--init``) is drawn at its total step count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from segakit.train.config import parse_config, runs_root

PANELS = (
    ("autoencoder", "loss", "autoencoder: L1 + 0.5 edge L1 (+KL)"),
    ("clip", "loss", "CLIP: contrastive loss"),
    ("unet", "loss", "U-Net: epsilon MSE (Min-SNR-5 weighted)"),
    ("flow", "loss", "flow transformer: velocity MSE"),
)
DEFAULT_STAGES = ("autoencoder", "clip", "unet")  # the U-Net model's parts; the flow run is drawn on request


@dataclass
class CurvesConfig:
    runs: str = ""  # default: $SEGAKIT_RUNS
    out: str = "docs/img/embedded-training-curves.png"
    stages: tuple[str, ...] = DEFAULT_STAGES  # which panels to draw (also: flow)


def read_metrics(path: Path, key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of ``key``; a step logged twice (a resumed run) keeps its last value."""
    by_step: dict[int, float] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if key in rec:
                by_step[rec["step"]] = rec[key]
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]


def earlier_steps(run: Path) -> int:
    """Steps behind a run's starting weights (0 unless it started with ``--init``)."""
    state = run / "ckpt" / "state.json"
    init = json.loads(state.read_text()).get("init") if state.is_file() else None
    return int(init["steps"]) if init else 0


def plot(runs: Path, out: Path, stages: tuple[str, ...] = DEFAULT_STAGES) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in PANELS if p[0] in stages]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    for ax, (stage, key, title) in zip(axes[0], panels):
        steps, values = read_metrics(runs / stage / "metrics.jsonl", key)
        offset = earlier_steps(runs / stage)
        if steps:
            ax.plot([s + offset for s in steps], values, lw=1)
            ax.set_yscale("log")
        else:
            ax.text(0.5, 0.5, "not trained yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(f"step (this run started at {offset:,})" if offset else "step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(CurvesConfig, argv)
    unknown = [s for s in cfg.stages if s not in {p[0] for p in PANELS}]
    if unknown:
        raise SystemExit(f"unknown stage {unknown[0]!r}; curves exist for {', '.join(p[0] for p in PANELS)}.")
    print(plot(Path(cfg.runs) if cfg.runs else runs_root(), Path(cfg.out), cfg.stages))


if __name__ == "__main__":
    main()
