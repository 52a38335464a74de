"""The SEGA study's figures, drawn from its cached images and its report (no generation here).

- ``fig_strength.png`` (the paper's Figure 1): per target, one seed at every scale of the sweep;
- ``fig_combination.png`` (Figure 5): concepts added one after another, per combination and seed;
- ``fig_two_concepts.png`` (Figure 10): two concepts at graded strengths, one seed;
- ``fig_monotonicity.png``: the oracle's mean probability of each edit's goal against the edit scale;
- ``fig_baseline.png``: SEGA against the prompt rewrite, success and SSIM per attribute.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from segakit.core.atomic import atomic_open
from segakit.core.images import grid, save_png
from segakit.eval.targets import COMBINATIONS, REMOVALS, STUDY_ADDITIONS


def _pil(u8: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(np.asarray(u8).transpose(1, 2, 0)))


def strength_strips(rows: list[tuple[str, np.ndarray]], scales: list[float]) -> Image.Image:
    """One row per target: its images at each scale (labelled), the target name at the left."""
    images = [_pil(u8) for _, strip in rows for u8 in strip]
    labels = [f"{s:g}" for _ in rows for s in scales]
    return grid(images, cols=len(scales), labels=labels, row_labels=[name for name, _ in rows], scale=2)


def combination_figure(plain: np.ndarray, images: np.ndarray) -> Image.Image:
    """Rows: (combination, seed); columns: the plain image, then the first 1, 2, 3, 4 concepts of the combination."""
    cells, labels, row_labels = [], [], []
    for c, combo in enumerate(COMBINATIONS):
        for s in range(plain.shape[0]):
            cells.append(_pil(plain[s]))
            labels.append("plain")
            for k, t in enumerate(combo):
                cells.append(_pil(images[c, k, s]))
                labels.append(("-" if t.remove else "+") + t.prompt)
            row_labels.append(f"set {c + 1}")
    return grid(cells, cols=len(COMBINATIONS[0]) + 1, labels=labels, row_labels=row_labels, scale=2)


def two_concept_grid(images: np.ndarray, strengths: list[float], names: tuple[str, str]) -> Image.Image:
    """Rows: the second concept's strength; columns: the first's."""
    cells = [_pil(images[i, j]) for i in range(len(strengths)) for j in range(len(strengths))]
    labels = [f"{names[0]} {sa:g}" for _ in strengths for sa in strengths]
    return grid(
        cells, cols=len(strengths), labels=labels, row_labels=[f"{names[1]} {sb:g}" for sb in strengths], scale=2
    )


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def monotonicity_plot(report: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mono = report["results"]["monotonicity"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, targets, title in ((axes[0], STUDY_ADDITIONS, "additions"), (axes[1], REMOVALS, "removals")):
        colors = plt.get_cmap("tab20").colors  # 11 additions: the default cycle of 10 would repeat a colour
        for t, color in zip(targets, colors[::2] + colors[1::2]):
            m = mono[t.name]
            if m["seeds"]:
                ax.plot(
                    m["scales"],
                    m["mean_probability"],
                    marker="o",
                    ms=3,
                    color=color,
                    label=f"{t.name} (n={m['seeds']})",
                )
        ax.set_title(f"{title}: oracle probability of the goal")
        ax.set_xlabel("edit scale")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    axes[0].set_ylabel("mean probability")
    return _png(fig)


def baseline_plot(report: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["results"]["additions_by_attribute"]
    names = list(rows)
    x = np.arange(len(names))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, key, title in ((axes[0], "success", "success"), (axes[1], "ssim", "SSIM to the unedited image")):
        for k, (side, label) in enumerate((("sega", "SEGA"), ("baseline", "prompt rewrite"))):
            vals = [
                rows[n][side]["success"]["rate"] if key == "success" else rows[n][side]["composition"]["ssim"]
                for n in names
            ]
            ax.bar(x + (k - 0.5) * 0.4, np.nan_to_num(np.asarray(vals, dtype=float)), width=0.4, label=label)
        ax.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
        ax.set_title(title)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
    return _png(fig)


def write_figures(study, report: dict, out: Path) -> list[Path]:
    """Write the figures of a finished :class:`~segakit.eval.sega_study.Study` into ``out``."""
    cfg, data = study.cfg, study.data
    scales = list(cfg.sweep)
    rows = [
        (t.name, data[f"sweep-{t.name}"]["strip"])
        for t in (*STUDY_ADDITIONS, *REMOVALS)
        if len(data[f"sweep-{t.name}"]["strip"])
    ]
    paths = []
    if rows:
        paths.append(save_png(strength_strips(rows, scales), out / "fig_strength.png"))
    plain = study.plain["images"][: cfg.figure_seeds]
    paths.append(save_png(combination_figure(plain, data["figure-combination"]["images"]), out / "fig_combination.png"))
    paths.append(save_png(two_concept_grid(data["figure-grid"]["images"], list(cfg.grid_strengths), tuple(cfg.grid_concepts)),
                          out / "fig_two_concepts.png"))  # fmt: skip
    for name, draw in (("fig_monotonicity.png", monotonicity_plot), ("fig_baseline.png", baseline_plot)):
        with atomic_open(out / name, "wb") as fh:
            fh.write(draw(report))
        paths.append(out / name)
    return paths
