"""segakit.editing: instruction-guided editing of real images, on the fly (Pix2Pix-OnTheFly).

``captioner`` (image -> caption, BLIP), ``caption_writer`` (instruction -> captions before/after, a causal LM),
``direction`` (caption sets -> an edit direction in text-embedding space), ``onthefly`` (pix2pix-zero's
cross-attention guided editor), ``image`` (input checks and conversion), ``params`` / ``pipeline``
(:class:`EditPipeline`; on SD3 and FLUX models it gives a :class:`FlowEditPipeline`, ``flow_pipeline``, over
``flow``'s FlowEdit, rectified-flow inversion and SEGA on it). Inversion and the cross-attention capture live in ``segakit.core``.
"""

from segakit.editing.caption_writer import CaptionWriter, parse_captions
from segakit.editing.captioner import Captioner
from segakit.editing.direction import EditDirection, edit_direction
from segakit.editing.flow_pipeline import FlowEditPipeline
from segakit.editing.params import EditParams
from segakit.editing.pipeline import EditPipeline, EditPipelineOutput

__all__ = [
    "CaptionWriter",
    "Captioner",
    "EditDirection",
    "EditParams",
    "EditPipeline",
    "EditPipelineOutput",
    "FlowEditPipeline",
    "edit_direction",
    "parse_captions",
]
