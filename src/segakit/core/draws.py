"""The per-image draw of fair generation: which value of an attribute image ``i`` gets, from its own seed.

Both fair methods use it (self-discovered directions, ``segakit.directions.library``, and Fair Diffusion's SEGA
edits, ``segakit.sega.fair``), so that on the same seeds they draw the same values and a PNG regenerated from
its parameters (``--from-png``) draws its value again from its seed alone.
"""

from __future__ import annotations

import math
import random

from segakit.core.errors import UserError


def parse_shares(attribute: str, text: str | None, allowed: list[str]) -> dict[str, float]:
    """``"woman:0.5,man:0.5"`` (or None: equal shares over ``allowed``) to shares that sum to 1."""
    if not text:
        return {v: 1 / len(allowed) for v in allowed}
    shares: dict[str, float] = {}
    for item in text.split(","):
        value, sep, share = item.strip().rpartition(":")
        if not sep or value not in allowed:
            raise UserError(f"--fair {attribute}={text!r}: {item.strip()!r} is not VALUE:SHARE with VALUE one of {', '.join(allowed)}.")
        try:
            shares[value] = float(share)
        except ValueError:
            raise UserError(f"--fair {attribute}={text!r}: the share {share!r} is not a number.") from None
    if any(s < 0 for s in shares.values()) or not math.isclose(sum(shares.values()), 1.0, abs_tol=1e-6):
        raise UserError(f"--fair {attribute}={text!r}: the shares must be 0 or more and sum to 1 (they sum to {sum(shares.values()):g}).")
    return shares


def draw_values(shares: dict[str, float], n_images: int, seed: int) -> list[str]:
    """One value per image: image ``i`` draws from ``random.Random(seed + i)`` with the given shares.

    The values are taken in sorted order, so the draw does not depend on the order the shares were written in."""
    values = sorted(shares)
    weights = [shares[v] for v in values]
    return [random.Random(seed + i).choices(values, weights)[0] for i in range(n_images)]
