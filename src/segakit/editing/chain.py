"""What every editor of real images shares: the instruction chain's captions (a captioner for the image, a caption
writer for the instruction, or the user's own), the embedded model's helpers, and the output dataclass.

Used by :class:`segakit.editing.pipeline.EditPipeline` (U-Nets) and
:class:`segakit.editing.flow_pipeline.FlowEditPipeline` (SD3, FLUX).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from segakit.core.embedded_flow import EMBEDDED_FLOW
from segakit.core.errors import UserError
from segakit.editing.caption_writer import EMBEDDED_CAPTION_WRITER, CaptionWriter
from segakit.editing.captioner import EMBEDDED_CAPTIONER, Captioner
from segakit.editing.params import EditParams

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


def check_inputs(image, output_type: str) -> None:
    """One sentence for an ``output_type`` an editor does not give or an ``image`` that is not a PIL image."""
    if output_type not in OUTPUT_TYPES:
        raise UserError(f"output_type {output_type!r} is not one of {', '.join(OUTPUT_TYPES)}.")
    if not isinstance(image, Image.Image):
        raise UserError(f"image must be a PIL image, got {type(image).__name__}.")


EMBEDDED_MODELS = ("embedded", EMBEDDED_FLOW)  # the models whose captioner and caption writer segakit ships
EMBEDDED_WRITER_TOKENS = 400  # room for 10 captions a side within the small writer's 512 positions


def embedded_helpers(
    model_name: str, captioner: Captioner | None, caption_writer: CaptionWriter | None
) -> tuple[Captioner | None, CaptionWriter | None]:
    """The embedded models' own captioner and caption writer (``segakit/assets``) where none is given: the U-Net
    model's, and the flow model's, which draws the same faces world from the same text encoder."""
    if str(model_name) not in EMBEDDED_MODELS:
        return captioner, caption_writer
    if captioner is None and EMBEDDED_CAPTIONER.is_dir():
        captioner = Captioner.from_pretrained(EMBEDDED_CAPTIONER)
    if caption_writer is None and EMBEDDED_CAPTION_WRITER.is_dir():
        caption_writer = CaptionWriter.from_pretrained(EMBEDDED_CAPTION_WRITER, max_new_tokens=EMBEDDED_WRITER_TOKENS)
    return captioner, caption_writer


def load_helpers(captioner: str | Path | Captioner | None, caption_writer: str | Path | CaptionWriter | None,
                 ) -> tuple[Captioner | None, CaptionWriter | None]:  # fmt: skip
    """A captioner and a caption writer from their folders (objects pass through)."""
    if isinstance(captioner, (str, Path)):
        captioner = Captioner.from_pretrained(captioner)
    if isinstance(caption_writer, (str, Path)):
        caption_writer = CaptionWriter.from_pretrained(caption_writer)
    return captioner, caption_writer


def chain_captions(captioner: Captioner | None, caption_writer: CaptionWriter | None, model_name: str,
                   params: EditParams, image: Image.Image) -> tuple[str, list[str], list[str], dict]:  # fmt: skip
    """The source caption and the captions before/after, from the user where given, else from the models."""
    meta: dict = {}
    source = params.source_caption or (params.captions_before[0] if params.captions_before else None)
    if source is None:
        if captioner is None:
            raise UserError(
                f"Model {model_name!r} has no captioner, so the image needs a caption from you: pass "
                "--source-caption (source_caption=), or --captioner (captioner=) with a local BLIP folder."
            )
        source = captioner(image)
    if params.captions_after:
        return source, list(params.captions_before) or [source], list(params.captions_after), meta
    if caption_writer is None and model_name in EMBEDDED_MODELS:
        raise UserError(
            "The embedded model's caption writer is not in this installation yet (segakit/assets/caption_writer), so "
            "the edited image needs captions from you: pass --captions-after (target_captions=), or --caption-writer "
            "(caption_writer=) with a local causal language model folder."
        )
    if caption_writer is None:
        raise UserError(
            f"Model {model_name!r} has no caption writer, so the edited image needs captions from you: pass "
            "--captions-after (target_captions=), or --caption-writer (caption_writer=) with a local causal language model folder."
        )
    written = caption_writer.write(params.instruction, source, params.num_captions, params.seed)
    meta = {"tries": written.tries, "complete": written.complete}
    return source, written.before, written.after, meta


def as_output(images: list[Image.Image], output_type: str):
    """PIL images as ``output_type`` "pil", "np" (N, H, W, 3 in [0, 1]) or "pt" (N, 3, H, W)."""
    if output_type == "pil":
        return images
    arr = np.stack([np.asarray(im, dtype=np.float32) / 255 for im in images])
    return arr if output_type == "np" else torch.from_numpy(arr).permute(0, 3, 1, 2)


@dataclass
class EditPipelineOutput:
    images: list[Image.Image] | np.ndarray | torch.Tensor
    reconstructions: list[Image.Image] | np.ndarray | torch.Tensor  # the reference pass: what inversion keeps
    source_caption: str
    captions_before: list[str]
    captions_after: list[str]
    params: EditParams
    losses: list[float] = field(default_factory=list)  # the cross-attention loss at each edit step
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per stage
    metadata: dict = field(default_factory=dict)  # caption writer: tries, complete
