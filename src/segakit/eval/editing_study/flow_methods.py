"""The study's methods on rectified-flow models (SD3, FLUX, the embedded flow model): what ``segakit edit --model
FOLDER`` runs, through :class:`segakit.editing.flow_pipeline.FlowEditPipeline`, at the flow editors' own defaults.

- ``flowedit-gold`` / ``flowedit-lm``: FlowEdit (no inversion) from the gold source caption to the gold target
  caption / along the caption writer's captions (``--method flowedit``), at FlowEdit's defaults for the model
  (:func:`segakit.editing.flow.flowedit_defaults`: the paper's for the family, on SD3 50 steps, the last 33 of them
  edited, guidance 3.5 / 13.5; the embedded flow model's own, 40 of 50 edited at 3.5 / 7.5 through a noise mask at
  0.8);
- ``rf-inversion-gold`` / ``rf-inversion-lm``: the rectified-flow inversion under the source caption, sampled under
  the target (``--method invert``: 28 steps each way, guidance 1, RF-Inversion's controllers off);
- ``sega-flow``: SEGA concepts from the instruction on that inversion (``--method sega``: 28 steps, each concept's
  scale ``--sega-scale``, its threshold ``--sega-threshold``);
- ``regenerate``: the inversion sampled back under the source caption (``--method invert`` with the source caption
  on both sides: no edit), the reconstruction that rf-inversion and sega-flow start from.

The study's ``--steps``, when given, replaces every method's steps (FlowEdit keeps the paper's share of them edited).
Each edit is one :class:`~segakit.editing.params.EditParams` (:func:`flow_params`), resolved for the family as
``segakit edit`` resolves it, and the cache key holds it, so a changed editor default recomputes what it changes.
The world's images are edited at their own side (64 pixels), whatever the model's default size, so that results and
gold targets compare pixel for pixel.
"""

from __future__ import annotations

from PIL import Image

from segakit.core.errors import UserError
from segakit.editing.params import EditParams
from segakit.eval.editing_study.config import GOLD, EditingStudyConfig
from segakit.eval.editing_study.result import MethodResult, to_u8

# study method -> segakit edit's --method
FLOW_EDITS = {"flowedit-gold": "flowedit", "flowedit-lm": "flowedit", "rf-inversion-gold": "invert",
              "rf-inversion-lm": "invert", "sega-flow": "sega", "regenerate": "invert"}  # fmt: skip
# the resolved settings that are not the inputs the study keys by themselves (those are in the key already)
_INPUTS = ("instruction", "model", "source_caption", "image", "image_sha256")


def flow_params(pipe, method: str, cfg: EditingStudyConfig, instruction: str, source_caption: str,
                target_caption: str | None, side: int) -> EditParams:  # fmt: skip
    """The edit ``method`` makes on a flow pipeline ``pipe`` (a FlowEditPipeline), its defaults filled in for the
    model's family: gold methods edit towards ``target_caption``, the -lm ones along the caption writer's captions,
    regenerate towards the source caption itself."""
    if method not in FLOW_EDITS:
        raise UserError(f"Method {method!r} does not run on this {pipe.family.upper()} model; choose from "
                        f"{', '.join(FLOW_EDITS)}.")  # fmt: skip
    edit = FLOW_EDITS[method]
    after = [target_caption] if method in GOLD else [source_caption] if method == "regenerate" else []
    params = EditParams(instruction=instruction, model=pipe.model_name, method=edit, source_caption=source_caption,
                        captions_after=after, num_captions=cfg.captions, steps=cfg.steps,
                        guidance_scale=cfg.sega_scale if edit == "sega" else None,
                        threshold=cfg.sega_threshold if edit == "sega" else 0.9, seed=cfg.edit_seed, size=side)  # fmt: skip
    return pipe.resolve(params)


def flow_key(params: EditParams) -> dict:
    """What of a resolved edit enters the study's cache key beside the turn's own inputs."""
    return {k: v for k, v in params.to_json().items() if k not in _INPUTS}


def run_flow(pipe, method: str, cfg: EditingStudyConfig, image: Image.Image, instruction: str, source_caption: str,
             target_caption: str) -> MethodResult:  # fmt: skip
    """One edit of ``method`` on a flow pipeline, as the study records it."""
    params = flow_params(pipe, method, cfg, instruction, source_caption, target_caption, image.width)
    out = pipe.run(params, image)
    concepts = list(params.concepts) if params.method == "sega" else []
    return MethodResult(to_u8(out.images[0]), 0.0, list(out.captions_before), list(out.captions_after), concepts,
                        stages=dict(out.seconds))  # fmt: skip
