"""``FlowEditPipeline``: instruction-guided editing of a real image on an SD3 or FLUX model, the instruction chain
of :class:`~segakit.editing.pipeline.EditPipeline` in front of :class:`~segakit.editing.flow.FlowEditor`.

>>> from segakit import SegaPipeline
>>> from segakit.editing import EditPipeline
>>> pipe = EditPipeline.from_pipe(SegaPipeline.from_pretrained(FOLDER), caption_writer=WRITER)  # SD3 or FLUX
>>> out = pipe(image, "give her glasses", source_caption="a photo of a woman")            # FlowEdit
>>> out = pipe(image, "give her glasses", method="sega", source_caption="a photo of a woman")

The chain is OnTheFly's: a source caption (the user's, or a captioner's), captions before and after the edit (the
user's, or a caption writer's). The captions become conditioning rows of the model's own text encoders, and the
target is the source moved along ``mean(after) - mean(before)`` (pix2pix-zero's edit direction, times
``direction_scale``; with one caption a side and scale 1 it is the caption after). Then one of:

- ``flowedit``: FlowEdit from the source to the target (no inversion; ``skip`` is the share of the schedule it
  leaves out, 1 - the paper's strength; unset settings are the paper's per family, :data:`~segakit.editing.flow.PAPER`);
- ``invert``: the rectified-flow inversion under the source, sampled under the target (RF-Inversion's ``gamma`` /
  ``eta`` optional): OnTheFly's idea on a flow;
- ``sega``: the inversion under the source caption, sampled again with SEGA concepts (``+glasses``; derived from
  the instruction when none are given, as on U-Nets): LEDITS++'s idea on a flow. It runs SegaPipeline's loop, so the
  pipeline must be a :class:`~segakit.SegaPipeline` (``SegaPipeline.from_pretrained``, or ``from_pretrained(...,
  pipeline_class=SegaPipeline)``).

Which method edits best, at which settings, is the embedded flow model's study (docs/results/flow, in progress).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image

from segakit.core.errors import UserError, arg
from segakit.editing.caption_writer import CaptionWriter
from segakit.editing.captioner import Captioner
from segakit.editing.chain import EditPipelineOutput, as_output, chain_captions, check_inputs, load_helpers
from segakit.editing.direction import direction_from_embeddings
from segakit.editing.flow import FlowEditor
from segakit.editing.flowedit import skipped_steps
from segakit.editing.image import fit
from segakit.editing.ledits import ConceptEdit
from segakit.editing.params import EditParams


class FlowEditPipeline:
    """A rectified-flow pipeline (SD3, FLUX) plus an optional captioner and caption writer."""

    def __init__(self, pipe, captioner: Captioner | None = None, caption_writer: CaptionWriter | None = None,
                 model_name: str = "custom") -> None:  # fmt: skip
        self.editor = FlowEditor(pipe)
        self.pipe = pipe
        self.captioner, self.caption_writer, self.model_name = captioner, caption_writer, model_name

    @classmethod
    def from_pipe(cls, pipe, captioner: Captioner | None = None, caption_writer: CaptionWriter | None = None,
                  model_name: str = "custom") -> FlowEditPipeline:  # fmt: skip
        return cls(pipe, captioner, caption_writer, model_name)

    @classmethod
    def from_pretrained(cls, name: str | Path, captioner: str | Path | Captioner | None = None,
                        caption_writer: str | Path | CaptionWriter | None = None, **kwargs) -> FlowEditPipeline:  # fmt: skip
        from segakit.core.loading import load_pipeline

        captioner, caption_writer = load_helpers(captioner, caption_writer)
        return cls(load_pipeline(name, **kwargs), captioner, caption_writer, model_name=str(name))

    @property
    def family(self) -> str:
        return self.editor.family.name

    def to(self, device: str | torch.device) -> FlowEditPipeline:
        self.pipe.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return self.pipe.device

    @property
    def resolution(self) -> int:
        return self.editor.size()

    def resolve(self, params: EditParams) -> EditParams:
        """``params`` checked for this model, the defaults of its method and family filled in (in place; returned)."""
        params.validate(self.family)
        multiple = self.editor.family.size_multiple
        if params.size is not None and params.size % multiple:
            raise UserError(f"{arg('size')} {params.size} is not a multiple of {multiple}, as this model needs.")
        return params

    def side(self, params: EditParams) -> int:
        """The side (pixels) ``params``' edit runs at: its ``size``, or the model's default."""
        return params.size or self.resolution

    def total_steps(self, params: EditParams) -> int:
        """Denoiser steps of the edit ``params`` (resolved) describes: what ``callback``'s ``total`` counts to."""
        if params.method == "flowedit":
            return params.steps - skipped_steps(params.steps, 1 - params.skip)
        return 2 * params.steps

    def __call__(
        self, image: Image.Image, instruction: str, source_caption: str | None = None,
        target_captions: Sequence[str] | None = None, captions_before: Sequence[str] | None = None,
        method: str = "flowedit", num_inference_steps: int | None = None, guidance_scale: float | None = None,
        source_guidance: float | None = None, skip: float | None = None, direction_scale: float = 1.0,
        concepts: Sequence[str] | None = None, threshold: float = 0.9, eta: float = 0.0, eta_stop: int | None = None,
        gamma: float = 0.0, size: int | None = None, num_captions: int = 3, seed: int = 0, output_type: str = "pil",
        callback: Callable[[int, int], None] | None = None, mask: float | None = None,
    ) -> EditPipelineOutput:  # fmt: skip
        """Edit ``image`` as ``instruction`` says with ``method`` "flowedit", "invert" or "sega"; settings left None
        are the method's for this family (:func:`segakit.editing.params.flow_defaults`). ``callback(done, total)``
        after each denoiser step; ``mask`` (flowedit): LEDITS++'s noise mask on each step at this quantile (0: none,
        the paper's; None: the model's, none but on the embedded flow model; :func:`segakit.editing.flowedit.flowedit`)."""
        params = EditParams(
            instruction=instruction, model=self.model_name, method=method, source_caption=source_caption,
            captions_before=list(captions_before or []), captions_after=list(target_captions or []),
            num_captions=num_captions, steps=num_inference_steps, guidance_scale=guidance_scale,
            source_guidance=source_guidance, skip=skip, direction_scale=direction_scale, concepts=list(concepts or []),
            threshold=threshold, eta=eta, eta_stop=eta_stop, gamma=gamma, size=size, seed=seed, mask=mask,
        )  # fmt: skip
        return self.run(params, image, output_type=output_type, callback=callback)

    def run(self, params: EditParams, image: Image.Image, output_type: str = "pil",
            callback: Callable[[int, int], None] | None = None) -> EditPipelineOutput:  # fmt: skip
        """The edit that ``params`` describes (what ``__call__`` and ``segakit edit --model FOLDER`` run)."""
        self.resolve(params)
        check_inputs(image, output_type)
        image = fit(image, self.side(params))
        seconds: dict[str, float] = {}
        clock = time.perf_counter()
        if params.method == "sega":  # the concepts carry the edit: no caption writer
            before, after, meta = [], [], {}
            source = params.source_caption or next(iter(params.captions_before), None)
            source = source or (self.captioner(image) if self.captioner is not None else "")
        else:
            source, before, after, meta = chain_captions(
                self.captioner, self.caption_writer, self.model_name, params, image
            )
        params.source_caption = source
        seconds["captions"] = time.perf_counter() - clock
        clock = time.perf_counter()
        out = self._edit(params, image, source, before, after, callback)
        seconds["edit"] = time.perf_counter() - clock
        if output_type == "latent":
            images, kept = out.latents, out.source_latents
        else:
            kept = self.editor.images(out.source_latents)  # what the edit started from: the autoencoder's round trip
            images, kept = as_output(out.images, output_type), as_output(kept, output_type)
        return EditPipelineOutput(images, kept, source, list(before), list(after), params, [], seconds, meta)

    def _edit(self, params: EditParams, image: Image.Image, source: str, before: list[str], after: list[str], callback):
        editor = self.editor
        if params.method == "sega":
            edits = [ConceptEdit.parse(c) for c in params.concepts if c.strip("+- ")]
            n = len(edits)
            return editor.sega(image, source, None, params.steps, params.source_guidance, params.gamma, params.seed,
                               callback, editing_prompt=[e.concept for e in edits],
                               reverse_editing_direction=[e.reverse for e in edits],
                               edit_guidance_scale=[params.guidance_scale] * n, edit_threshold=[params.threshold] * n,
                               edit_warmup_steps=[0] * n, size=params.size)  # fmt: skip
        fam, device = editor.family, self.device
        source_cond = fam.encode([source], device)
        direction = direction_from_embeddings(fam.encode(list(before), device), fam.encode(list(after), device))
        target = direction.add_to(source_cond, params.direction_scale)
        if params.method == "flowedit":
            return editor.flowedit(image, source_cond, target, params.steps, 1 - params.skip, params.source_guidance,
                                   params.guidance_scale, seed=params.seed, callback=callback, size=params.size,
                                   mask=params.mask)  # fmt: skip
        return editor.edit(image, source_cond, target, params.steps, params.guidance_scale, params.gamma, params.eta,
                           params.eta_stop, params.seed, callback=callback, size=params.size)  # fmt: skip
