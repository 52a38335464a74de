"""The directions study's measures, as small functions over the oracle's labels and 8-bit images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from segakit.eval.isolation import isolation
from segakit.eval.ssim import ssim
from segakit.eval.targets import Target
from segakit.world.schema import ATTRIBUTES


def parse_key(name: str) -> tuple[str, str | bool]:
    """``"glasses=true"`` -> ("glasses", True); ``"skin=dark"`` -> ("skin", "dark")."""
    attribute, _, value = name.partition("=")
    if ATTRIBUTES[attribute] == (False, True):
        return attribute, value == "true"
    return attribute, value


def shares(labels: Sequence[dict], attribute: str) -> dict[str, float]:
    """The share of images the oracle reads with each value of ``attribute``."""
    n = max(1, len(labels))
    return {str(v): sum(lab[attribute] == v for lab in labels) / n for v in ATTRIBUTES[attribute]}


def deviation_ratio(labels: Sequence[dict], attribute: str) -> float:
    """max over the K values |share - 1/K| / (1 - 1/K): 0 is balanced, 1 is a single value (the paper's measure)."""
    k = len(ATTRIBUTES[attribute])
    return max(abs(s - 1 / k) for s in shares(labels, attribute).values()) / (1 - 1 / k)


def follows(labels: Sequence[dict], attribute: str, choices: Sequence[str]) -> float:
    """The share of images the oracle reads with the value drawn for them."""
    return float(np.mean([str(lab[attribute]) == c for lab, c in zip(labels, choices)])) if choices else float("nan")


def follows_by_value(labels: Sequence[dict], attribute: str, choices: Sequence[str]) -> dict[str, float]:
    """:func:`follows` for the images that drew each value (generalisation: per role, per value)."""
    out = {}
    for v in sorted(set(choices)):
        rows = [i for i, c in enumerate(choices) if c == v]
        out[v] = follows([labels[i] for i in rows], attribute, [v] * len(rows))
    return out


def unchanged(plain: Sequence[dict], other: Sequence[dict], attributes: Sequence[str]) -> float:
    """The share of the attributes other than ``attributes`` that the oracle reads as on the plain image of the
    same seed (:func:`segakit.eval.isolation.isolation`)."""
    targets = [Target(a, "", a, "") for a in attributes]
    return isolation(plain, other, targets)["unchanged"]


def mean_ssim(plain: torch.Tensor, other: torch.Tensor) -> float:
    """Mean SSIM between 8-bit image batches of the same seeds."""
    return float(ssim(plain.float() / 255, other.float() / 255).mean())


def share_true(labels: Sequence[dict], attribute: str, value: str | bool) -> float:
    return float(np.mean([lab[attribute] == value for lab in labels])) if labels else float("nan")


def value_probability(probs: dict[str, torch.Tensor], name: str) -> np.ndarray:
    """The oracle's probability of ``attribute=value`` per image (from :meth:`Oracle.probabilities`)."""
    attribute, value = parse_key(name)
    return probs[attribute][:, ATTRIBUTES[attribute].index(value)].double().numpy()


def removed(plain_share: float, share: float) -> float:
    """The share of the plain model's horror an arm removes: 1 - share / plain share (nan where plain has none)."""
    return 1 - share / plain_share if plain_share > 0 else float("nan")
