"""The study's methods: one function per method, each editing one image as one instruction says (on a flow model,
SD3 or FLUX, the flow methods of :mod:`segakit.eval.editing_study.flow_methods`).

All get the same inputs (the image, the instruction, the gold source caption and, for OnTheFly with gold
captions, the gold target caption), the same steps and seed, and return the result as uint8 pixels, the wall time
of the edit (model loading excluded), and what the method used (captions written, concepts derived).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch
from PIL import Image

from segakit.core.errors import UserError
from segakit.core.inversion import NoiseRegularization, ddim_invert, ddim_sample
from segakit.editing.concepts import derive_concepts
from segakit.editing.image import decode, encode
from segakit.editing.pipeline import EditPipeline
from segakit.eval.editing_study.config import CAPTIONED, UNET_METHODS, WRITTEN, EditingStudyConfig, kind_of
from segakit.eval.editing_study.flow_methods import run_flow
from segakit.eval.editing_study.peer import ledits_edit, ledits_peer
from segakit.eval.editing_study.result import MethodResult, to_u8

if TYPE_CHECKING:
    from segakit.editing.flow_pipeline import FlowEditPipeline

__all__ = ["MethodResult", "Methods", "to_u8"]


class Methods:
    """The models behind the methods, loaded once: the edit pipeline (with a caption writer, when there is one)
    and diffusers' LEDITS++ pipeline on the same components. On an SD3 or FLUX model ``pipe`` is a
    :class:`~segakit.editing.flow_pipeline.FlowEditPipeline` and the flow methods run."""

    def __init__(self, pipe: EditPipeline | FlowEditPipeline, cfg: EditingStudyConfig) -> None:
        self.pipe, self.cfg = pipe, cfg
        self._peer = None

    @property
    def family(self) -> str:
        """The model's family: "unet" (an EditPipeline), "sd3" or "flux" (a FlowEditPipeline)."""
        return getattr(self.pipe, "family", "unet")

    @property
    def flow(self) -> bool:
        return kind_of(self.family) == "flow"

    def available(self, method: str) -> bool:
        return (method not in WRITTEN or self.pipe.caption_writer is not None) and (
            method not in CAPTIONED or self.pipe.captioner is not None
        )

    def run(
        self, method: str, image: Image.Image, instruction: str, source_caption: str, target_caption: str
    ) -> MethodResult:
        if not self.available(method):
            raise UserError(f"Method {method!r} needs a caption writer (and, for onthefly-auto-ddpm, a captioner); pass "
                            "--caption-writer with a local causal LM folder.")  # fmt: skip
        start = time.perf_counter()
        if self.flow:
            result = run_flow(self.pipe, method, self.cfg, image, instruction, source_caption, target_caption)
        elif method in UNET_METHODS:
            result = getattr(self, "_" + method.replace("-", "_"))(image, instruction, source_caption, target_caption)
        else:
            raise UserError(f"Method {method!r} edits SD3 and FLUX models; on this U-Net model choose from "
                            f"{', '.join(UNET_METHODS)}.")  # fmt: skip
        result.seconds = time.perf_counter() - start
        return result

    def _onthefly(self, image, instruction, source_caption, target_captions, inversion: str = "ddim") -> MethodResult:
        c = self.cfg
        blend = c.blend and inversion == "ddpm" and bool(c.ddpm_mask)
        out = self.pipe(image, instruction, source_caption=source_caption, target_captions=target_captions, inversion=inversion,
                        num_inference_steps=c.steps_for("onthefly"), guidance_scale=c.ddpm_guidance if inversion == "ddpm" else c.guidance,
                        cross_attention_guidance=c.xa_guidance, num_captions=c.captions, seed=c.edit_seed, skip=c.skip,
                        mask=c.ddpm_mask if inversion == "ddpm" else 0.0,
                        blend=blend, blend_dilate=c.blend_dilate if blend else 0)  # fmt: skip
        return MethodResult(
            to_u8(out.images[0]), 0.0, out.captions_before, out.captions_after, stages=dict(out.seconds)
        )

    def _onthefly_gold(self, image, instruction, source_caption, target_caption) -> MethodResult:
        return self._onthefly(image, instruction, source_caption, [target_caption])

    def _onthefly_lm(self, image, instruction, source_caption, target_caption) -> MethodResult:
        return self._onthefly(image, instruction, source_caption, None)

    def _onthefly_gold_ddpm(self, image, instruction, source_caption, target_caption) -> MethodResult:
        return self._onthefly(image, instruction, source_caption, [target_caption], inversion="ddpm")

    def _onthefly_lm_ddpm(self, image, instruction, source_caption, target_caption) -> MethodResult:
        return self._onthefly(image, instruction, source_caption, None, inversion="ddpm")

    def _onthefly_auto_ddpm(self, image, instruction, source_caption, target_caption) -> MethodResult:
        return self._onthefly(image, instruction, None, None, inversion="ddpm")  # the pipeline captions the image

    def _sega(self, image, instruction, source_caption, target_caption) -> MethodResult:
        c, blend = self.cfg, self.cfg.blends("sega")
        concepts = derive_concepts(instruction, source_caption)
        # at source guidance 1 the pipeline inverts and samples without the caption (as the peer does)
        out = self.pipe(image, instruction, source_caption=source_caption, method="sega", concepts=concepts,
                        num_inference_steps=c.steps_for("sega"), guidance_scale=c.sega_scale, threshold=c.sega_threshold, skip=c.skip,
                        source_guidance=c.source_guidance, mask_tokens=c.mask_tokens, seed=c.edit_seed, blend=blend,
                        sega_mask=c.sega_mask, blend_dilate=c.blend_dilate if blend else 0)  # fmt: skip
        return MethodResult(to_u8(out.images[0]), 0.0, concepts=concepts)

    def _ledits_diffusers(self, image, instruction, source_caption, target_caption) -> MethodResult:
        c, p = self.cfg, self.pipe
        if self._peer is None:
            self._peer = ledits_peer(p.vae, p.text_encoder, p.tokenizer, p.unet, p.scheduler.config)
        concepts = derive_concepts(instruction, source_caption)
        pixels = ledits_edit(
            self._peer,
            image,
            concepts,
            c.steps_for("ledits-diffusers"),
            c.skip,
            c.sega_scale,
            c.sega_threshold,
            c.edit_seed,
            p.resolution,
            c.sega_mask,
        )
        return MethodResult(to_u8(pixels), 0.0, concepts=concepts)

    def _regenerate(self, image, instruction, source_caption, target_caption) -> MethodResult:
        """DDIM inversion with the source caption (regularised, as OnTheFly inverts), then DDIM sampling back with
        the source caption: OnTheFly's reference pass, alone (its guidance over [source, source] is the source's
        prediction)."""
        c, p = self.cfg, self.pipe
        text = p.text_models()
        cond = text.encode([source_caption])
        x0 = encode(p.vae, image)
        steps = c.steps_for("regenerate")
        inverted = ddim_invert(p.unet, p.scheduler.config, x0, cond, steps, regularization=NoiseRegularization(),
                               generator=torch.Generator().manual_seed(c.edit_seed))  # fmt: skip
        x = ddim_sample(p.unet, p.scheduler.config, inverted.latents, cond, steps)
        return MethodResult(to_u8(decode(p.vae, x)[0]), 0.0, [source_caption], [source_caption])
