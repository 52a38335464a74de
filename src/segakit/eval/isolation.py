"""Isolation of an edit: how much of what it did not target stays as it was, read by the faces world's oracle."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from segakit.eval.targets import Target
from segakit.world.schema import ATTRIBUTES


def isolation(plain: Sequence[dict], edited: Sequence[dict], targets: Sequence[Target]) -> dict:
    """Share of the untargeted attributes the oracle reads the same before and after the edit.

    Untargeted: every attribute but the targets' own and those they entail (a bald head loses its hair colour
    and bangs); hair colour is not compared where either image is bald. ``unchanged`` is the mean share over
    the pairs, ``all_unchanged`` the share of pairs where nothing untargeted changed, ``changed`` the rate at
    which each untargeted attribute changed.
    """
    skip = {t.attribute for t in targets} | {a for t in targets for a in t.entails}
    attrs = [a for a in ATTRIBUTES if a not in skip]
    shares, flips = [], {a: [] for a in attrs}
    for p, e in zip(plain, edited):
        same = []
        for a in attrs:
            if a == "hair_color" and "bald" in (p["hair_style"], e["hair_style"]):
                continue
            same.append(p[a] == e[a])
            flips[a].append(p[a] != e[a])
        if same:
            shares.append(float(np.mean(same)))
    return {
        "unchanged": float(np.mean(shares)) if shares else float("nan"),
        "all_unchanged": float(np.mean([s == 1.0 for s in shares])) if shares else float("nan"),
        "changed": {a: float(np.mean(v)) if v else float("nan") for a, v in flips.items()},
    }
