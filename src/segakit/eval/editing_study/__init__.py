"""segakit.eval.editing_study: instruction-guided editing measured on faces-world edit pairs in MagicBrush's format.

    segakit eval editing --pairs 24 --sessions 4 --steps 25 --out docs/results/editing/study

Methods side by side on the same pairs and seeds (``config.METHODS``): OnTheFly with the gold target caption and
with a caption writer's captions, segakit's SEGA on the edit-friendly inversion, diffusers' own LEDITS++ pipeline
as a peer (``peer``), and inversion + regeneration with the source caption. On an SD3 or FLUX model (the embedded
flow model: ``--model embedded-flow``) the flow methods instead (``flow_methods``): FlowEdit, the rectified-flow
inversion sampled under the target, SEGA on that inversion, and regeneration; the methods of the other kind of
model are refused by name. MagicBrush's metrics (L1, L2, CLIP-I,
CLIP-T with the embedded CLIP) and the world's exact ones (the oracle's success on the instructed attribute, the
other attributes unchanged, SSIM to the source), single-turn and multi-turn (``items``, ``metrics``). Cached per
edit (``run``), reported as report.md / report.json with figures and the MagicBrush-format files (``report``,
``figures``, ``export``).
"""

from segakit.eval.editing_study.config import (
    FLOW_METHODS,
    METHODS,
    UNET_METHODS,
    UNET_STEPS,
    EditingStudyConfig,
    default_methods,
    kind_of,
)
from segakit.eval.editing_study.methods import Methods
from segakit.eval.editing_study.metrics import ClipScorer
from segakit.eval.editing_study.report import build_report, markdown, write_report
from segakit.eval.editing_study.run import NO_EDIT, ROUND_TRIP, TARGET, EditingStudy

__all__ = [
    "FLOW_METHODS",
    "METHODS",
    "NO_EDIT",
    "ROUND_TRIP",
    "TARGET",
    "UNET_METHODS",
    "UNET_STEPS",
    "ClipScorer",
    "EditingStudy",
    "EditingStudyConfig",
    "Methods",
    "build_report",
    "default_methods",
    "kind_of",
    "markdown",
    "write_report",
]
