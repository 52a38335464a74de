"""The settings ``segakit edit`` uses when the user names none: the measured recipe, or the papers' one flag away.

``measured`` (the default) is the setting that edited best on the editing study's held-out pairs (world seed 1;
docs/editing.md, the tables "Held out", and docs/guide.md, "Editing defaults", with the commands that measure them):

- OnTheFly on an edit-friendly DDPM inversion, editing only inside the 0.98 quantile of the edit direction's
  change (the noise mask), at guidance 5: it follows the instruction as often as the paper's recipe and keeps
  more of the rest of the image;
- SEGA (``--method sega``) through SEGA's own noise masks at threshold 0.99, scale 5, with latent blending: more
  pairs edited and more of the rest kept than LEDITS++'s defaults (intersected masks at 0.9, no blend).

``paper`` is the recipe as its paper states it: OnTheFly on a DDIM inversion with cross-attention guidance at
guidance 5 (Pix2Pix-OnTheFly), and LEDITS++'s defaults for SEGA. A flag the user gives always wins over either.
"""

from __future__ import annotations

from dataclasses import dataclass

from segakit.core.errors import UserError, arg

RECIPES = ("measured", "paper")


@dataclass(frozen=True)
class Recipe:
    """The defaults of one method under one recipe (None: the field's own default)."""

    inversion: str = "ddim"
    mask: float = 0.0
    guidance: float = 5.0
    threshold: float = 0.9
    sega_mask: str = "intersect"
    blend: bool = False


_TABLE = {
    ("onthefly", "measured"): Recipe(inversion="ddpm", mask=0.98, guidance=5.0),
    ("onthefly", "paper"): Recipe(inversion="ddim", mask=0.0, guidance=5.0),
    ("sega", "measured"): Recipe(inversion="ddpm", threshold=0.99, sega_mask="noise", blend=True, guidance=5.0),
    ("sega", "paper"): Recipe(inversion="ddpm", threshold=0.9, sega_mask="intersect", blend=False, guidance=5.0),
}


def recipe(method: str, name: str = "measured") -> Recipe:
    """The defaults of ``method`` ("onthefly" or "sega") under recipe ``name`` ("measured" or "paper")."""
    if name not in RECIPES:
        raise UserError(f"{arg('recipe')} {name!r} is not one of {', '.join(RECIPES)}.")
    if (method, name) not in _TABLE:
        raise UserError(f"{arg('method')} {method!r} is not one of onthefly, sega.")
    return _TABLE[(method, name)]
