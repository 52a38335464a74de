"""Module paths of segakit 0.1 that moved in the package reshape keep working until 0.3, with a warning.

Each old module is a two-line file calling :func:`alias`, which puts the new module in its place in
``sys.modules``: ``segakit.guidance.Edit is segakit.sega.guidance.Edit``. See docs/layout.md.
"""

from __future__ import annotations

import importlib
import sys
import warnings


def alias(old: str, new: str) -> None:
    """Make module ``old`` the module ``new`` (called while ``old`` is being imported), warning once."""
    warnings.warn(f"{old} moved to {new}; import it from there (the old path goes in segakit 0.3).",
                  DeprecationWarning, stacklevel=3)  # fmt: skip
    sys.modules[old] = importlib.import_module(new)
