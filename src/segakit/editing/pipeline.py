"""``EditPipeline``: instruction-guided editing of a real image, on the fly (Pix2Pix-OnTheFly).

>>> from segakit.editing import EditPipeline
>>> pipe = EditPipeline.from_pretrained("embedded")     # with its own small captioner and caption writer
>>> out = pipe(image, instruction="give her glasses", num_inference_steps=25)
>>> out.images[0], out.source_caption, out.captions_before, out.captions_after

Steps: caption the image (a :class:`Captioner`, or the caption the user gives), invert it with DDIM conditioned on
that caption (pix2pix-zero's noise regularisation on by default), get captions before/after the edit (a
:class:`CaptionWriter`, or the captions the user gives), make the edit direction, and run the cross-attention
guided editor. Diffusers' conventions: ``from_pretrained`` / ``from_pipe``, a callable returning an output
dataclass with ``.images``, ``output_type`` "pil" | "np" | "pt" | "latent".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image

from segakit.core.families import family_name
from segakit.core.inversion import NoiseRegularization, ddim_invert, ddpm_invert
from segakit.editing.caption_writer import CaptionWriter
from segakit.editing.captioner import Captioner
from segakit.editing.chain import (  # noqa: F401 (EditPipelineOutput and embedded_helpers: importable from here, as before)
    OUTPUT_TYPES,
    EditPipelineOutput,
    as_output,
    chain_captions,
    check_inputs,
    embedded_helpers,
    load_helpers,
)
from segakit.editing.direction import TextModels, edit_direction
from segakit.editing.image import decode, encode, fit
from segakit.editing.ledits import ConceptEdit, concept_tokens, sega_on_inversion
from segakit.editing.onthefly import edit_on_ddpm_inversion, edit_with_cross_attention_guidance
from segakit.editing.params import FLOW_FAMILIES, EditParams


class EditPipeline:
    """Components of an SD 1.x/2.x/SDXL pipeline plus an optional captioner and caption writer."""

    def __init__(self, vae, text_encoder, tokenizer, unet, scheduler, text_encoder_2=None, tokenizer_2=None,
                 captioner: Captioner | None = None, caption_writer: CaptionWriter | None = None, model_name: str = "custom") -> None:  # fmt: skip
        self.vae, self.unet, self.scheduler = vae, unet, scheduler
        self.text_encoder, self.tokenizer = text_encoder, tokenizer
        self.text_encoder_2, self.tokenizer_2 = text_encoder_2, tokenizer_2
        self.captioner, self.caption_writer, self.model_name = captioner, caption_writer, model_name
        for m in (vae, unet, text_encoder, text_encoder_2):
            if m is not None:
                m.requires_grad_(False).eval()

    @classmethod
    def from_pipe(cls, pipe, captioner: Captioner | None = None, caption_writer: CaptionWriter | None = None,
                  model_name: str = "custom"):  # fmt: skip
        """From a loaded diffusers pipeline (shares its components); ``model_name="embedded"`` (or
        ``"embedded-flow"``) brings the embedded models' own captioner and caption writer unless others are given. An SD3 or FLUX pipeline gives a
        :class:`~segakit.editing.flow_pipeline.FlowEditPipeline` (methods flowedit, invert, sega; sega needs a
        :class:`~segakit.SegaPipeline`, e.g. ``SegaPipeline.from_pretrained(FOLDER)``)."""
        transformer = getattr(pipe, "transformer", None)
        if transformer is not None and family_name({"transformer": transformer}) in FLOW_FAMILIES:
            from segakit.editing.flow_pipeline import FlowEditPipeline

            captioner, caption_writer = embedded_helpers(model_name, captioner, caption_writer)
            return FlowEditPipeline(pipe, captioner=captioner, caption_writer=caption_writer, model_name=model_name)
        captioner, caption_writer = embedded_helpers(model_name, captioner, caption_writer)
        return cls(pipe.vae, pipe.text_encoder, pipe.tokenizer, pipe.unet, pipe.scheduler,
                   getattr(pipe, "text_encoder_2", None), getattr(pipe, "tokenizer_2", None),
                   captioner=captioner, caption_writer=caption_writer, model_name=model_name)  # fmt: skip

    @classmethod
    def from_pretrained(cls, name: str | Path = "embedded", captioner: str | Path | Captioner | None = None,
                        caption_writer: str | Path | CaptionWriter | None = None, **kwargs):  # fmt: skip
        """ "embedded", a hub id or a local diffusers folder (safetensors only); optional captioner / caption-writer
        folders (the embedded model has its own: ``segakit/assets/captioner``, ``segakit/assets/caption_writer``).
        An SD3 or FLUX model gives a :class:`~segakit.editing.flow_pipeline.FlowEditPipeline`; pass
        ``pipeline_class=SegaPipeline`` for its method sega (SEGA's sampling loop)."""
        from segakit.core.loading import load_pipeline

        captioner, caption_writer = load_helpers(captioner, caption_writer)
        pipe = load_pipeline(name, **kwargs)
        return cls.from_pipe(pipe, captioner=captioner, caption_writer=caption_writer, model_name=str(name))

    family = "unet"  # what EditParams.validate checks a method against (a U-Net: onthefly, sega)

    def resolve(self, params: EditParams) -> EditParams:
        """``params`` checked for this model, the defaults of its method filled in (in place; returned)."""
        return params.validate(self.family)

    def total_steps(self, params: EditParams) -> int:
        """Denoiser steps of the edit ``params`` (resolved) describes: what ``callback``'s ``total`` counts to."""
        return (3 if params.method == "onthefly" and params.inversion == "ddim" else 2) * params.steps

    def to(self, device: str | torch.device) -> EditPipeline:
        for m in (self.vae, self.unet, self.text_encoder, self.text_encoder_2):
            if m is not None:
                m.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def resolution(self) -> int:
        scale = 2 ** (len(self.vae.config.block_out_channels) - 1)
        return int(self.unet.config.sample_size) * scale

    def text_models(self) -> TextModels:
        return TextModels(self.tokenizer, self.text_encoder, self.tokenizer_2, self.text_encoder_2,
                          getattr(self.unet.config, "addition_embed_type", None) == "text_time", (self.resolution, self.resolution))  # fmt: skip

    def captions(self, params: EditParams, image: Image.Image) -> tuple[str, list[str], list[str], dict]:
        """The source caption and the captions before/after, from the user where given, else from the models."""
        return chain_captions(self.captioner, self.caption_writer, self.model_name, params, image)

    def __call__(
        self, image: Image.Image, instruction: str, source_caption: str | None = None,
        target_captions: Sequence[str] | None = None, captions_before: Sequence[str] | None = None,
        method: str = "onthefly", inversion: str = "ddim", num_inference_steps: int = 25, guidance_scale: float = 5.0,
        cross_attention_guidance: float = 0.15, direction_scale: float = 1.0, regularize: bool = True,
        num_captions: int = 3, seed: int = 0, concepts: Sequence[str] | None = None, skip: float = 0.15,
        source_guidance: float = 1.0, threshold: float = 0.9, mask_tokens: str = "all", mask: float = 0.0,
        blend: bool = False, output_type: str = "pil", callback: Callable[[int, int], None] | None = None,
        sega_mask: str = "intersect", blend_dilate: int = 0,
    ) -> EditPipelineOutput:  # fmt: skip
        """Edit ``image`` as ``instruction`` says; ``callback(done, total)`` after each U-Net step. ``mask`` (OnTheFly
        on a DDPM inversion): keep the edit where the direction moves the noise prediction most, this quantile of
        the latent (LEDITS++'s noise mask; 0: everywhere; docs/editing.md: 0.98 with guidance 5 keeps more of the
        rest at 0.90 success or more). ``blend`` (SEGA, or a masked DDPM edit): outside the masks of the steps so far, hold the inversion's own
        latents (:mod:`segakit.editing.blend`), each step's mask grown by ``blend_dilate`` latent pixels. ``sega_mask`` (SEGA): ``"intersect"`` (LEDITS++'s masks),
        ``"attention"`` or ``"noise"`` alone (SEGA's own quantile mask; docs/editing.md: ``"noise"`` at ``threshold``
        0.99 with ``blend`` edits more and keeps more of the rest than LEDITS++'s defaults on the embedded model)."""
        params = EditParams(
            instruction=instruction, model=self.model_name, method=method, inversion=inversion, source_caption=source_caption,
            captions_before=list(captions_before or []), captions_after=list(target_captions or []),
            num_captions=num_captions, steps=num_inference_steps, guidance_scale=guidance_scale,
            xa_guidance=cross_attention_guidance, direction_scale=direction_scale, regularize=regularize, seed=seed,
            concepts=list(concepts or []), skip=skip, source_guidance=source_guidance, threshold=threshold,
            mask_tokens=mask_tokens, mask=mask, blend=blend, sega_mask=sega_mask, blend_dilate=blend_dilate,
        )  # fmt: skip
        return self.run(params, image, output_type=output_type, callback=callback)

    def run(self, params: EditParams, image: Image.Image, output_type: str = "pil",
            callback: Callable[[int, int], None] | None = None) -> EditPipelineOutput:  # fmt: skip
        """The edit that ``params`` describes (what ``__call__`` and ``segakit edit --from-png`` run)."""
        self.resolve(params)
        check_inputs(image, output_type)
        image = fit(image, self.resolution)
        if params.method == "sega":
            return self._run_sega(params, image, output_type, callback)
        seconds: dict[str, float] = {}
        clock = time.perf_counter()
        source, before, after, meta = self.captions(params, image)
        params.source_caption = source
        seconds["captions"] = time.perf_counter() - clock

        ddpm = params.inversion == "ddpm"
        total = (2 if ddpm else 3) * params.steps  # DDPM: inversion, edit; DDIM: inversion, reference pass, edit
        step = (lambda i: callback(i + 1, total)) if callback is not None else None
        text = self.text_models()
        clock = time.perf_counter()
        x0 = encode(self.vae, image)
        source_cond = text.encode([source])
        gen = torch.Generator().manual_seed(params.seed)
        if ddpm:
            inverted = ddpm_invert(
                self.unet,
                self.scheduler.config,
                x0,
                source_cond,
                source_cond,
                params.steps,
                1.0,
                params.skip,
                gen,
                callback=step,
            )
        else:
            reg = NoiseRegularization() if params.regularize else None
            inverted = ddim_invert(
                self.unet,
                self.scheduler.config,
                x0,
                source_cond,
                params.steps,
                regularization=reg,
                generator=gen,
                callback=step,
            )
        seconds["inversion"] = time.perf_counter() - clock

        clock = time.perf_counter()
        direction = edit_direction(text, before, after)
        offset = (lambda i: callback(params.steps + i + 1, total)) if callback is not None else None
        if ddpm:  # no reference pass, no cross-attention guidance; the inversion alone gives the input back exactly
            latents = edit_on_ddpm_inversion(self.unet, self.scheduler.config, inverted, source_cond, direction, params.skip,
                                             params.guidance_scale, params.direction_scale, params.mask, params.blend, callback=offset,
                                             blend_dilate=params.blend_dilate)  # fmt: skip
            reconstruction, losses = x0, []
        else:
            result = edit_with_cross_attention_guidance(
                self.unet, self.scheduler.config, inverted.latents, source_cond, source_cond, direction, params.steps,
                params.guidance_scale, params.xa_guidance, params.direction_scale, callback=offset,
            )  # fmt: skip
            latents, reconstruction, losses = result.latents, result.reconstruction, result.losses
        seconds["edit"] = time.perf_counter() - clock
        return EditPipelineOutput(
            self._output(latents, output_type), self._output(reconstruction, output_type), source,
            list(before), list(after), params, losses, seconds, meta,
        )  # fmt: skip

    def _run_sega(self, params: EditParams, image: Image.Image, output_type: str, callback) -> EditPipelineOutput:
        """LEDITS++: edit-friendly inversion (towards the source caption, if any), then masked SEGA concepts."""
        seconds: dict[str, float] = {}
        source = params.source_caption or (params.captions_before[0] if params.captions_before else None)
        if source is None and self.captioner is not None:
            source = self.captioner(image)
        params.source_caption = source
        text = self.text_models()
        step = (lambda i: callback(i + 1, 2 * params.steps)) if callback is not None else None
        clock = time.perf_counter()
        x0 = encode(self.vae, image)
        uncond = text.encode([""])
        # source guidance 1: the unconditional model throughout (diffusers' LEDITS++ with no source prompt); the
        # caption then only names the old values for the concepts
        guided = bool(source) and params.source_guidance != 1.0
        cond = text.encode([source]) if guided else uncond
        gen = torch.Generator().manual_seed(params.seed)
        inverted = ddpm_invert(self.unet, self.scheduler.config, x0, cond, uncond, params.steps,
                               params.source_guidance if guided else 1.0, params.skip, gen, callback=step)  # fmt: skip
        seconds["inversion"] = time.perf_counter() - clock
        clock = time.perf_counter()
        edits = [
            ConceptEdit.parse(c, scale=params.guidance_scale, threshold=params.threshold)
            for c in params.concepts
            if c.strip("+- ")
        ]
        tokens = [concept_tokens(self.tokenizer, e.concept, params.mask_tokens) for e in edits]
        offset = (lambda i: callback(params.steps + i + 1, 2 * params.steps)) if callback is not None else None
        latents = sega_on_inversion(self.unet, self.scheduler.config, inverted, uncond, text.encode([e.concept for e in edits]),
                                    edits, tokens, params.skip, cond if guided else None, params.source_guidance, params.blend, callback=offset,
                                    masks=params.sega_mask, blend_dilate=params.blend_dilate)  # fmt: skip
        seconds["edit"] = time.perf_counter() - clock
        # what the inversion alone gives back: exactly the image (the autoencoder's round trip), by construction
        x = x0
        return EditPipelineOutput(self._output(latents, output_type), self._output(x, output_type), source or "", [], [],
                                  params, [], seconds, {})  # fmt: skip

    def _output(self, latents: torch.Tensor, output_type: str):
        if output_type == "latent":
            return latents
        return as_output(decode(self.vae, latents), output_type)
