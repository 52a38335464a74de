"""The SEGA study's measures: composition preservation, rates with Wilson intervals, monotonicity, and the
oracle's labels as compact arrays."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from segakit.eval.ssim import ssim
from segakit.eval.targets import (
    Target,
)
from segakit.world.schema import ATTRIBUTES


def quantize(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] -> uint8, as a PNG stores it. All measures are taken on these."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


def to_float(u8: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(u8)).float() / 255.0


COMPOSITION = ("ssim", "rmse", "cosine")  # the measures of composition preservation


def composition(
    edited: np.ndarray, plain: np.ndarray, f_edited: np.ndarray, f_plain: np.ndarray
) -> dict[str, np.ndarray]:
    """Per pair: SSIM and RMSE (pixels in [0, 1]) to the unedited image, cosine similarity of oracle features."""
    if len(edited) == 0:
        return {k: np.zeros(0, np.float32) for k in COMPOSITION}
    x, y = to_float(edited), to_float(plain)
    fe, fp = torch.as_tensor(f_edited).double(), torch.as_tensor(f_plain).double()
    return {
        "ssim": ssim(x, y).numpy().astype(np.float32),
        "rmse": ((x - y) ** 2).mean(dim=(1, 2, 3)).sqrt().numpy().astype(np.float32),
        "cosine": torch.nn.functional.cosine_similarity(fe, fp, dim=1, eps=1e-12).numpy().astype(np.float32),
    }


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95% by default) of a rate of k in n."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def rate(flags: Sequence[bool] | np.ndarray) -> dict:
    """Share of true flags with its 95% Wilson interval."""
    flags = np.asarray(flags, dtype=bool)
    n, k = int(flags.size), int(flags.sum())
    return {"k": k, "n": n, "rate": k / n if n else float("nan"), "ci95": list(wilson(k, n))}


def monotonicity(scales: Sequence[float], p: np.ndarray, flat: float = 1e-4) -> dict:
    """Spearman correlation between edit scale and the probability of the edit's goal, per seed.

    ``p`` is (seeds, scales). A seed whose probability moves by less than ``flat`` over the sweep (a saturated
    or untouched image: only float noise would be ranked) has no correlation (``undefined``);
    ``spearman_mean``/``median`` and ``share_increasing`` (rho > 0) are over the seeds that have one, and
    ``spearman_of_mean`` is the correlation of the mean curve.
    """
    from scipy.stats import spearmanr

    p = np.asarray(p, dtype=np.float64).reshape(-1, len(scales))
    x = np.asarray(scales, dtype=np.float64)

    def rho(y: np.ndarray) -> float:
        if np.ptp(y) < flat:
            return float("nan")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(spearmanr(x, y)[0])

    rhos = np.array([rho(row) for row in p])
    ok = rhos[~np.isnan(rhos)]
    mean_curve = p.mean(0) if len(p) else np.full(len(scales), np.nan)
    return {
        "seeds": int(len(p)),
        "scales": [float(s) for s in scales],
        "mean_probability": [float(v) for v in mean_curve],
        "spearman_mean": float(ok.mean()) if ok.size else float("nan"),
        "spearman_median": float(np.median(ok)) if ok.size else float("nan"),
        "share_increasing": float((ok > 0).mean()) if ok.size else float("nan"),
        "undefined": int(np.isnan(rhos).sum()),
        "spearman_of_mean": rho(mean_curve) if len(p) else float("nan"),
    }


def at_least(successes: np.ndarray) -> dict[str, float]:
    """Table 2: share of seeds with at least k of m edits successful, k = 1..m. ``successes`` is (seeds, m)."""
    s = np.asarray(successes, dtype=bool)
    count = s.sum(1)
    return {str(k): float((count >= k).mean()) if len(s) else float("nan") for k in range(1, s.shape[1] + 1)}


# ------------------------------------------------------------------------------------- labels, probs
ATTRS = list(ATTRIBUTES)
COLUMNS = [(a, v) for a in ATTRS for v in ATTRIBUTES[a]]


def encode(labels: Sequence[dict]) -> np.ndarray:
    return np.array([[ATTRIBUTES[a].index(lab[a]) for a in ATTRS] for lab in labels], dtype=np.int8).reshape(
        -1, len(ATTRS)
    )


def decode(codes: np.ndarray) -> list[dict]:
    return [{a: ATTRIBUTES[a][int(c)] for a, c in zip(ATTRS, row)} for row in np.asarray(codes)]


def goal_probability(t: Target, probs: np.ndarray) -> np.ndarray:
    """The oracle's probability of the edit's goal per image, from (N, V) probabilities in :data:`COLUMNS` order.

    P(attribute = value), times P(not bald) for a hair colour (no hair colour on a bald head), and one minus
    that for a removal."""
    col = {c: i for i, c in enumerate(COLUMNS)}
    p = probs[:, col[(t.attribute, t.value)]].astype(np.float64)
    if t.attribute == "hair_color":
        p = p * (1 - probs[:, col[("hair_style", "bald")]])
    return 1 - p if t.remove else p
