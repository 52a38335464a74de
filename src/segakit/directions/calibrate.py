"""Calibrating fair generation: which directions to add when a value is drawn, chosen by what the images show.

Fair generation adds the drawn value's own direction. On the embedded model that fails for skin: each middle tone's
direction draws its lighter neighbour (docs/directions.md), so "balanced" draws come out light. Calibration reads
the model's own images of each candidate recipe (a direction at a strength, or two directions together) on seeds
kept apart from any evaluation, and keeps for each value the recipe whose images show that value most often.

A recipe is a tuple of ``(direction name, strength)`` pairs. These are the pure parts; the recipe that makes the
images and writes ``library.json`` is ``python -m segakit.train.calibrate_directions``.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

Recipe = tuple[tuple[str, float], ...]


def candidates(names: Sequence[str], strengths: Sequence[float], pair_strength: float | None = None) -> list[Recipe]:
    """Every direction alone at each of ``strengths``; with ``pair_strength``, every two directions together at it."""
    singles = [((n, float(s)),) for n in names for s in strengths]
    pairs = (
        [((a, float(pair_strength)), (b, float(pair_strength))) for a, b in combinations(names, 2)]
        if pair_strength
        else []
    )
    return singles + pairs


def share(reads: Sequence[str], value: str) -> float:
    """The share of the images read as ``value``."""
    return sum(r == value for r in reads) / len(reads) if reads else 0.0


def _order(recipe: Recipe) -> tuple[int, float]:
    """Among equal shares, prefer fewer directions, then less total strength."""
    return len(recipe), sum(s for _, s in recipe)


def choose(reads: dict[Recipe, Sequence[str]], values: Sequence[str], margin: float = 0.0,
           prefer: dict[str, Recipe] | None = None) -> dict[str, tuple[Recipe, float]]:  # fmt: skip
    """For each value, a recipe whose images are read as that value most often, and that share. ``reads`` maps a
    recipe to the values read on its images (the same seeds for every recipe). Among the recipes within ``margin``
    of the best share (a guard against the noise of a few seeds), the simplest wins: fewer directions, less
    strength, then ``prefer[value]`` (the value's own direction)."""
    if not reads:
        raise ValueError("no candidate recipes were read")
    prefer = prefer or {}
    out = {}
    for v in values:
        top = max(share(r, v) for r in reads.values())
        near = [r for r in reads if share(reads[r], v) >= top - margin - 1e-12]
        best = min(near, key=lambda r: (*_order(r), r != prefer.get(v), -share(reads[r], v)))
        out[v] = (best, share(reads[best], v))
    return out


def expected_shares(chosen: dict[str, Recipe], reads: dict[Recipe, Sequence[str]], values: Sequence[str],
                    draw: dict[str, float] | None = None) -> dict[str, float]:  # fmt: skip
    """The shares of ``values`` the images would show if each value were drawn with probability ``draw`` (default
    equal) and its chosen recipe added: what calibration predicts fair generation gives."""
    draw = draw or {v: 1 / len(values) for v in values}
    return {w: sum(p * share(reads[chosen[v]], w) for v, p in draw.items()) for w in values}


def balanced_draw(
    chosen: dict[str, Recipe], reads: dict[Recipe, Sequence[str]], values: Sequence[str]
) -> dict[str, float]:
    """How often to draw each value so that the shares the images show come out as even as the recipes allow: the
    draw minimising ``max over values |expected share - 1/K|`` (a small linear programme). A value whose recipe
    seldom shows it is drawn more often; one that other values' recipes also produce, less."""
    import numpy as np
    from scipy.optimize import linprog

    k = len(values)
    m = np.array([[share(reads[chosen[v]], w) for w in values] for v in values])  # row: drawn value, column: read
    # variables: the draw p (k) and the largest deviation t; minimise t
    cost = np.r_[np.zeros(k), 1.0]
    upper = np.c_[m.T, -np.ones(k)]  # m.T p - t <= 1/k
    lower = np.c_[-m.T, -np.ones(k)]  # -m.T p - t <= -1/k
    res = linprog(cost, A_ub=np.r_[upper, lower], b_ub=np.r_[np.full(k, 1 / k), np.full(k, -1 / k)],
                  A_eq=np.r_[np.ones(k), 0.0][None], b_eq=[1.0], bounds=[(0, 1)] * k + [(0, None)], method="highs")  # fmt: skip
    if not res.success:  # cannot happen for a stochastic m; equal draws are always feasible
        return {v: 1 / k for v in values}
    p = np.clip(res.x[:k], 0, None)
    return {v: float(x) for v, x in zip(values, p / p.sum())}
