"""Multi-turn editing: several instructions in a row, each editing the previous turn's result (MagicBrush's
multi-turn protocol; ``segakit edit ... --then "INSTRUCTION"``).

Turn k+1 starts from turn k's 8-bit result image (what a user would save and edit again). Its source caption is
the one given for it; else turn k's first "after" caption (OnTheFly); else the captioner's caption of the new image
(:meth:`EditPipeline.captions`); ``--method sega`` turns derive their concepts from their own instruction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from PIL import Image

from segakit.editing.params import EditParams
from segakit.editing.pipeline import EditPipeline, EditPipelineOutput


def chain_caption(turn: EditParams, previous: EditPipelineOutput | None) -> EditParams:
    """``turn`` with its source caption filled from the previous turn's written/given "after" captions when it has none."""
    if previous is None or turn.source_caption or turn.captions_before or not previous.captions_after:
        return turn
    return dataclasses.replace(turn, source_caption=previous.captions_after[0])


def run_turns(pipe: EditPipeline, turns: Sequence[EditParams], image: Image.Image,
              callback: Callable[[int, int, int], None] | None = None) -> list[EditPipelineOutput]:  # fmt: skip
    """Edit ``image`` by each of ``turns`` in order; ``callback(turn, done, total)`` after each U-Net step."""
    outputs: list[EditPipelineOutput] = []
    for k, turn in enumerate(turns):
        params = chain_caption(dataclasses.replace(turn), outputs[-1] if outputs else None)
        step = (lambda done, total, k=k: callback(k, done, total)) if callback is not None else None
        out = pipe.run(params, image, callback=step)
        outputs.append(out)
        image = out.images[0]
    return outputs
