"""Per-model SEGA edit defaults: what an edit gets when the user gives no parameters."""

from __future__ import annotations

from pathlib import Path

from segakit.core.loading import EMBEDDED, model_key
from segakit.sega.guidance import DIFFUSERS_EDIT, Edit

# The embedded model's default SEGA edit parameters for 25 DDIM steps: scale 6, threshold 0.8 and the
# paper's warm-up of 10 of 50 steps halved, chosen for the shipped U-Net (v3: v2 continued 4,500 steps) by
# `python benchmarks/sega_defaults.py --scales 4,6,8,10 --thresholds 0.8 --warmups 5 --seeds 16 --scan 100` on seeds
# apart from the reported ones (its rule: among the settings that change no more of the untargeted attributes
# than rewriting the prompt does, best worst target, then best mean, then isolation; docs/results/embedded/notes.md).
# Scales 6, 8 and 10 all drew every target on all 16 seeds; 6 kept the most of the rest (isolation 0.735,
# against 0.712 at 8 and the rewrite's 0.659). Version 2 got scale 8 by the same command.
# Other models get diffusers' defaults (DIFFUSERS_EDIT: scale 5, threshold 0.9, warm-up 10).
EMBEDDED_EDIT = Edit(scale=6.0, threshold=0.8, warmup=5)
EMBEDDED_STEPS = 25  # the step count the embedded model's defaults were chosen at
DIFFUSERS_STEPS = 50
# The embedded flow model's, chosen on the shipped step-17,000 weights by the same rule at 25 steps:
# `python benchmarks/sega_defaults.py --model embedded-flow --scales 6,8,10 --thresholds 0.9,0.95 --warmups 3 --seeds 12
# --scan 100`: the rewrite keeps 0.656 of the untargeted attributes; scales 8 and 10 at 0.9 and 10 at 0.95 draw every
# target on every seed, and 10 / 0.95 keeps the most of the rest among them (0.770; 8 / 0.9, the step-11,000 pick,
# 0.741); scale 6, or 8 at 0.95, keep more and miss a makeup seed. On 48 other seeds it also draws glasses + smile +
# curls + beard more often (`benchmarks/sega_combinations.py --settings 10:0.95:3,8:0.9:3`: 0.792 against 0.688).
# Warm-up 3 beat 5 at every scale on step 4,500 (docs/results/flow/report.md).
EMBEDDED_FLOW_EDIT = Edit(scale=10.0, threshold=0.95, warmup=3)


def edit_defaults(name: str | Path | None) -> Edit:
    """The parameters an edit gets on model ``name`` ("embedded", its folder, a hub id, a folder) when none are given.

    One source for every entry point: ``Edit("glasses")`` in ``SegaPipeline`` (which asks with the folder it
    was loaded from) and ``--edit +glasses`` on the command line get the same values on the same model.
    """
    return _embedded_edits().get(None if name is None else model_key(name), DIFFUSERS_EDIT)


def default_steps(name: str | Path | None) -> int:
    """The command line's default step count for model ``name``: 25 on the embedded models (where their edit
    defaults were chosen), diffusers' 50 elsewhere."""
    return EMBEDDED_STEPS if name is not None and model_key(name) in _embedded_edits() else DIFFUSERS_STEPS


def _embedded_edits() -> dict[str, Edit]:
    """The embedded models' edit defaults by their one spelling (:func:`segakit.core.loading.model_key`)."""
    from segakit.core.embedded_flow import EMBEDDED_FLOW  # imported when asked, as model_key does

    return {EMBEDDED: EMBEDDED_EDIT, EMBEDDED_FLOW: EMBEDDED_FLOW_EDIT}
