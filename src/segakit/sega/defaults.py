"""Per-model SEGA edit defaults: what an edit gets when the user gives no parameters."""

from __future__ import annotations

from pathlib import Path

from segakit.core.loading import EMBEDDED
from segakit.sega.guidance import Edit

# The embedded model's default SEGA edit parameters for 25 DDIM steps: scale 10, threshold 0.8 and the
# paper's warm-up of 10 of 50 steps halved, chosen for the shipped U-Net by
# `python benchmarks/sega_defaults.py --scales 10,20,30,40 --thresholds 0.8 --warmups 5 --seeds 20` on seeds
# apart from the reported ones (its rule: among the settings that change no more of the untargeted attributes
# than rewriting the prompt does, best worst target, then best mean; docs/embedded-model.md).
# Other models get diffusers' defaults (Edit()).
EMBEDDED_EDIT = Edit(scale=10.0, threshold=0.8, warmup=5)


def edit_defaults(name: str | Path) -> Edit:
    """The parameters an edit gets on model ``name`` when none are given."""
    return EMBEDDED_EDIT if str(name) == EMBEDDED else Edit()
