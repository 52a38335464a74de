"""SegaPipeline: diffusers components in, semantically guided images out.

One batched U-Net call per denoising step for (unconditional, prompt, alive edits) x images. A concept
past its cool-down leaves the batch (its estimate would never be used again). Works with SD 1.x/2.x
(epsilon or v-prediction) and SDXL components.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, UNet2DConditionModel
from diffusers.image_processor import VaeImageProcessor
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import (
    rescale_noise_cfg,
)
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils import BaseOutput
from transformers import (
    CLIPImageProcessor,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    CLIPVisionModelWithProjection,
)

from segakit.core.conditioning import Conditioning
from segakit.core.errors import UserError
from segakit.core.families import Family, family_for, family_name
from segakit.core.hooks import (
    BlockShift,
    HSpaceOffset,
    conditional_rows,
    total_offset,
)
from segakit.core.loading import load_pipeline
from segakit.sega.call_checks import check_true_cfg, directions_site, refresh_guidance
from segakit.sega.callbacks import CallState, StepCallback
from segakit.sega.defaults import edit_defaults
from segakit.sega.diffusers_args import edits_from_diffusers_args
from segakit.sega.fair import fair_call
from segakit.sega.groups import ConceptRows, EditGroup, check_groups
from segakit.sega.guidance import Edit, QuantileOver, guided_estimate, refresh_interval
from segakit.sega.loaders import DiffusersFeaturesMixin
from segakit.sega.recorded import RecordedGuidance, guidance_steps

logger = logging.getLogger(__name__)


@dataclass
class SegaPipelineOutput(BaseOutput):
    """``images`` follow ``output_type``; ``guidance`` is set when ``record_guidance=True``; ``edits`` are the
    edits as applied, unset fields filled with the model's defaults."""

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    nsfw_content_detected: list[bool] | None = None
    guidance: RecordedGuidance | None = None
    edits: list[Edit] | None = None


class SegaPipeline(DiffusionPipeline, DiffusersFeaturesMixin, CallState):
    """Semantic guidance for any Stable-Diffusion-family model that diffusers loads.

    Build it from a loaded pipeline with ``SegaPipeline.from_pipe(pipe)`` or load it with
    ``SegaPipeline.from_pretrained(id_or_path)`` ("embedded" is the model shipped with segakit), or from
    one ``.safetensors`` checkpoint with ``SegaPipeline.from_single_file(path, config=folder)``.
    LoRA, textual inversion, VAE slicing/tiling, CPU offload and FreeU work as on diffusers'
    pipelines (:mod:`segakit.sega.loaders`).
    """

    model_cpu_offload_seq = "text_encoder->text_encoder_2->image_encoder->unet->vae"
    _optional_components = ["tokenizer_2", "text_encoder_2", "safety_checker", "feature_extractor", "image_encoder"]

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        unet: UNet2DConditionModel,
        scheduler: KarrasDiffusionSchedulers,
        tokenizer_2: CLIPTokenizer | None = None,
        text_encoder_2: CLIPTextModelWithProjection | None = None,
        safety_checker: torch.nn.Module | None = None,
        feature_extractor: CLIPImageProcessor | None = None,
        force_zeros_for_empty_prompt: bool = True,
        image_encoder: CLIPVisionModelWithProjection | None = None,
    ) -> None:
        super().__init__()
        self.register_modules(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            tokenizer_2=tokenizer_2,
            text_encoder_2=text_encoder_2,
            safety_checker=safety_checker,
            feature_extractor=feature_extractor,
            image_encoder=image_encoder,
        )
        self.register_to_config(force_zeros_for_empty_prompt=force_zeros_for_empty_prompt)
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1) if vae is not None else 8
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)

    # -----------------------------------------------------------------------------------------
    # Loading

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path = "embedded", **kwargs) -> SegaPipeline:
        """Load from "embedded", a hub id or a local folder; weights from safetensors only."""
        return load_pipeline(pretrained_model_name_or_path, pipeline_class=cls, **kwargs)

    #: the model families this class runs; a subclass for other families registers itself here
    family_names: tuple[str, ...] = ("sd", "sdxl")
    _by_family: dict[str, type] = {}

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        for name in cls.__dict__.get("family_names", ()):
            SegaPipeline._by_family[name] = cls

    @classmethod
    def from_pipe(cls, pipeline, **kwargs) -> SegaPipeline:
        """A SegaPipeline over ``pipeline``'s components (shared, not copied); for an SD3 or FLUX pipeline, the
        family's subclass (:mod:`segakit.sega.flow_pipelines`)."""
        target = cls
        if cls is SegaPipeline:
            family = family_name(pipeline.components)
            if family not in cls.family_names:
                importlib.import_module("segakit.sega.flow_pipelines")  # registers the transformer families' classes
            target = SegaPipeline._by_family.get(family, SegaPipeline)
        return super(SegaPipeline, target).from_pipe.__func__(target, pipeline, **kwargs)

    _edit_defaults: Edit | None = None

    @property
    def edit_defaults(self) -> Edit:
        """What unset ``Edit`` fields become: set it, or the defaults of the model this pipeline was loaded
        from (:func:`segakit.sega.defaults.edit_defaults`; diffusers' for components built in code)."""
        return self._edit_defaults or edit_defaults(self.name_or_path)

    @edit_defaults.setter
    def edit_defaults(self, value: Edit | None) -> None:
        self._edit_defaults = value

    @property
    def is_sdxl(self) -> bool:
        return self.family.name == "sdxl"

    @property
    def family(self) -> Family:
        """This pipeline's model-family adapter (:mod:`segakit.core.families`): a new one on each access."""
        return family_for(self)

    # -----------------------------------------------------------------------------------------
    # Conditioning

    def encode_texts(self, texts: list[str], device: torch.device, lora_scale: float | None = None) -> Conditioning:
        """One conditioning row per text, for this pipeline's model family (SDXL's time ids are set later).

        Multi-vector textual-inversion tokens are expanded (diffusers' ``maybe_convert_prompt``); ``lora_scale``
        scales the text encoders' LoRA layers for this encoding, as diffusers does.
        """
        return self.family.encode(texts, device, lora_scale)

    @staticmethod
    def _edit_conditioning(
        fam: Family,
        edits: Sequence[Edit],
        embeddings: torch.Tensor | None,
        pooled: torch.Tensor | None,
        device,
        lora_scale=None,
    ) -> list[Conditioning]:
        """One single-row conditioning per concept (text or precomputed embeddings)."""
        if embeddings is None:
            cond = fam.encode([e.prompt or "" for e in edits], device, lora_scale)
            return [cond.rows(k, k + 1) for k in range(len(edits))]
        cond = fam.precomputed(embeddings, pooled, device)
        return [cond.rows(k, k + 1) for k in range(len(cond))]

    # -----------------------------------------------------------------------------------------
    # Sampling pieces

    def prepare_latents(self, batch, height, width, dtype, device, generator, latents=None) -> torch.Tensor:
        return self.family.prepare_latents(batch, height, width, dtype, device, generator, latents)

    def decode(self, latents: torch.Tensor, output_type: str, device, fam: Family | None = None) -> tuple:
        """Latents to images in ``output_type``; runs the safety checker if the model has one."""
        if output_type == "latent":
            return latents, None
        fam = fam or self.family
        vae = self.vae
        upcast = vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
        dtype = torch.float32 if upcast else vae.dtype
        if upcast:
            vae.to(torch.float32)
        try:
            z = fam.to_vae(latents.to(dtype))
            image = vae.decode(z, return_dict=False)[0]
        finally:
            if upcast:
                vae.to(torch.float16)
        nsfw = None
        if getattr(self, "safety_checker", None) is not None and getattr(self, "feature_extractor", None) is not None:
            features = self.feature_extractor(
                self.image_processor.postprocess(image, output_type="pil"), return_tensors="pt"
            )
            image, nsfw = self.safety_checker(images=image, clip_input=features.pixel_values.to(device, image.dtype))
        denorm = [True] * image.shape[0] if nsfw is None else [not x for x in nsfw]
        return self.image_processor.postprocess(image, output_type=output_type, do_denormalize=denorm), nsfw

    # -----------------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float | None = None,
        negative_prompt: str | list[str] | None = None,
        num_images_per_prompt: int = 1,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback: Callable[[int, int, torch.Tensor], None] | None = None,
        callback_steps: int = 1,
        editing_prompt: str | list[str] | None = None,
        editing_prompt_embeddings: torch.Tensor | None = None,
        reverse_editing_direction: bool | list[bool] = False,
        edit_guidance_scale: float | list[float] = 5,
        edit_warmup_steps: int | list[int] = 10,
        edit_cooldown_steps: int | list[int] | None = None,
        edit_threshold: float | list[float] = 0.9,
        edit_momentum_scale: float = 0.1,
        edit_mom_beta: float = 0.4,
        edit_weights: list[float] | None = None,
        sem_guidance: RecordedGuidance | torch.Tensor | list[torch.Tensor] | None = None,
        *,
        edits: Sequence[Edit] | None = None,
        editing_pooled_embeddings: torch.Tensor | None = None,
        quantile_over: QuantileOver = "channel",
        max_unet_batch: int | None = None,
        record_guidance: bool = False,
        record_device: str | torch.device | None = None,
        guidance_rescale: float = 0.0,
        cross_attention_kwargs: dict | None = None,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        directions: Sequence[HSpaceOffset] | None = None,
        fair=None,
        ip_adapter_image=None,
        ip_adapter_image_embeds: list[torch.Tensor] | None = None,
        true_cfg_scale: float = 1.0,
        max_sequence_length: int | None = None,
        edit_refresh: int | str = 1,
        guidance_refresh: int = 1,
        edit_groups: Sequence[EditGroup] | None = None,
    ) -> SegaPipelineOutput | tuple:
        """Generate images with semantic guidance.

        Accepts the argument names of diffusers' deprecated ``SemanticStableDiffusionPipeline``
        (``editing_prompt``, ``edit_guidance_scale``, ...) or the typed form ``edits=[Edit(...)]``.

        ``guidance_scale`` defaults to diffusers' default for the family: 7.5 (SD 1.x/2.x), 5.0 (SDXL).

        Extra arguments: ``editing_pooled_embeddings`` (SDXL, with precomputed embeddings),
        ``quantile_over`` ("channel": per image and channel as diffusers; "image": one quantile per
        image over all channels), ``max_unet_batch`` (cap on rows per U-Net call),
        ``record_guidance`` (return the applied guidance in ``output.guidance``; it stays on the
        device unless ``record_device`` says otherwise), ``directions`` (h-space offsets such as
        :class:`segakit.directions.Direction` ``.at(strength)``, added to the conditional branch's mid-block
        output at every step; several sum), ``fair`` (fair generation, one drawn value per image: a direction
        library's draw ``Library.fair(...)``, added to ``directions``, or Fair Diffusion's
        :class:`segakit.sega.fair.FairDiffusion` draw, one call per value; give one generator per image),
        ``edit_refresh`` (compute each concept's estimate every K steps and reuse its direction in between, or
        ``"auto"``: K from the number of steps, :func:`segakit.sega.guidance.refresh_interval`;
        :class:`segakit.sega.guidance.ConceptRefresh`; 1 is exact SEGA), ``guidance_refresh`` (the same for classifier-free
        guidance: the unconditional estimate every K steps, its offset to the prompt's reused in between; 1 is exact),
        ``edit_groups`` (instead of ``edits``: consecutive images with their own concepts and SEGA options,
        :mod:`segakit.sega.groups`), ``true_cfg_scale`` and
        ``max_sequence_length`` (FLUX / SD3, as in their diffusers pipelines; docs/flow.md),
        ``ip_adapter_image`` / ``ip_adapter_image_embeds`` (after
        ``load_ip_adapter``, as in diffusers; edit branches get the empty image, :mod:`segakit.sega.loaders`).

        As in diffusers' Stable Diffusion pipelines: ``guidance_rescale`` (rescale the final estimate
        towards the prompt's standard deviation, 0 = off), ``cross_attention_kwargs`` (e.g. ``{"scale": 0.5}``
        for the LoRA scale), ``callback_on_step_end`` with ``callback_on_step_end_tensor_inputs``
        (:mod:`segakit.sega.callbacks`).
        """
        call = dict(locals())  # this call's arguments, for Fair Diffusion's one call per drawn value
        # ---- inputs
        if prompt is None:
            raise UserError("prompt is missing; pass a string or a list of strings (an empty string is allowed).")
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts:
            raise UserError("prompt is an empty list; pass at least one prompt.")
        if int(num_inference_steps) != num_inference_steps or num_inference_steps < 1:
            raise UserError(f"num_inference_steps {num_inference_steps!r} must be a whole number of 1 or more.")
        if num_images_per_prompt < 1:
            raise UserError(f"num_images_per_prompt {num_images_per_prompt!r} must be 1 or more.")
        if output_type not in ("pil", "np", "pt", "latent"):
            raise UserError(f"output_type {output_type!r} is not one of 'pil', 'np', 'pt', 'latent'.")
        if not 0.0 <= guidance_rescale <= 1.0:
            raise UserError(f"guidance_rescale {guidance_rescale!r} is outside [0, 1]; 0 turns it off, 0.7 is usual.")
        step_callback = StepCallback(callback_on_step_end, callback_on_step_end_tensor_inputs)
        if max_unet_batch is not None and max_unet_batch < 1:
            raise UserError(f"max_unet_batch {max_unet_batch!r} must be 1 or more (or None for no cap).")
        fam = self.family
        if max_sequence_length is not None and fam.flow:
            fam.max_sequence_length = int(max_sequence_length)
        height = height or fam.default_size()
        width = width or fam.default_size()
        multiple = fam.size_multiple
        if height % multiple or width % multiple or height < multiple or width < multiple:
            raise UserError(f"height x width {height}x{width} must be positive multiples of {multiple} for this model.")

        if edits is not None and (editing_prompt or editing_prompt_embeddings is not None):
            raise UserError("Pass edits either as edits=[Edit(...)] or with editing_prompt, not both.")
        if edits is None:
            n_emb = 0 if editing_prompt_embeddings is None else int(editing_prompt_embeddings.shape[0])
            edits = edits_from_diffusers_args(
                editing_prompt, n_emb, reverse_editing_direction, edit_guidance_scale, edit_warmup_steps,
                edit_cooldown_steps, edit_threshold, edit_weights,
            )  # fmt: skip
        edits = [e.with_defaults(self.edit_defaults) for e in edits]
        if edit_groups is not None:
            check_groups(edit_groups, len(prompts) * num_images_per_prompt, edits, fair, sem_guidance,
                         record_guidance, directions, ip_adapter_image, ip_adapter_image_embeds)  # fmt: skip
            edits = [e.with_defaults(self.edit_defaults) for g in edit_groups for e in g.edits]
        if fair is not None:
            if not hasattr(fair, "offset"):  # Fair Diffusion: SEGA edits per drawn value
                return fair_call(self, call, edits)
            directions = [*(directions or ()), fair]  # a library's draw: an h-space offset whose rows differ by image

        if guidance_scale is None:
            guidance_scale = fam.default_guidance_scale
        if (ip_adapter_image is not None or ip_adapter_image_embeds is not None) and fam.flow:
            raise UserError(
                f"IP-Adapter images work on U-Net models (SD 1.x/2.x, SDXL); this is a {fam.name.upper()} model."
            )
        check_true_cfg(fam, negative_prompt, true_cfg_scale)
        device = self._execution_device
        batch = len(prompts) * num_images_per_prompt
        do_cfg = fam.has_uncond(guidance_scale, negative_prompt, true_cfg_scale)
        cfg_scale = fam.guidance(guidance_scale, true_cfg_scale)
        self._guidance_scale, self._guidance_rescale, self._interrupt = guidance_scale, guidance_rescale, False
        self._cross_attention_kwargs = cross_attention_kwargs
        lora_scale = (cross_attention_kwargs or {}).get("scale")
        # Without an unconditional branch a flow model's concepts are taken against the prompt's own estimate
        # (FLUX's distilled guidance, docs/flow.md); on U-Nets SEGA lives on classifier-free guidance, as in diffusers.
        guided = do_cfg or fam.flow
        if edits and not guided:
            logger.warning("guidance_scale <= 1 turns classifier-free guidance off, and with it semantic guidance.")
        use_sega = guided and bool(edits)

        # ---- conditioning: rows [uncond x batch, prompt x batch, edit_k x batch ...]
        cond = fam.encode(prompts, device, lora_scale)
        conds = [cond]
        if do_cfg:
            negs = None
            if negative_prompt is not None:
                negs = [negative_prompt] * len(prompts) if not isinstance(negative_prompt, list) else negative_prompt
                if len(negs) != len(prompts):
                    raise UserError(
                        f"{len(negs)} negative prompts were given for {len(prompts)} prompts; give one per prompt."
                    )
            uncond = fam.uncond(negs, cond, device, lora_scale)
            conds.append(uncond)
        edit_conds = (
            self._edit_conditioning(
                fam, edits, editing_prompt_embeddings, editing_pooled_embeddings, device, lora_scale
            )
            if use_sega
            else []
        )
        fam.finish([*conds, *edit_conds], height, width)
        cond = cond.repeat_rows(num_images_per_prompt)
        base = Conditioning.cat([uncond.repeat_rows(num_images_per_prompt), cond]) if do_cfg else cond
        concepts = None
        if use_sega:  # the concepts of every image (exact SEGA, concept refresh), or of each group of images
            single = EditGroup(batch, edits, edit_momentum_scale, edit_mom_beta, quantile_over, edit_refresh)
            concepts = ConceptRows.from_groups(edit_groups or [single], self.edit_defaults, num_inference_steps)
        # each concept is paired with every image of its group (all images without groups): its row repeated per image
        edit_conds = [c.repeat_rows(concepts.count(k)) for k, c in enumerate(edit_conds)]
        base, edit_conds = self.image_prompt(
            base, edit_conds, ip_adapter_image, ip_adapter_image_embeds, device, batch, do_cfg
        )

        # ---- reuse of recorded guidance
        reuse = guidance_steps(sem_guidance, num_inference_steps) if guided else None

        # ---- sampling
        timesteps = fam.set_timesteps(num_inference_steps, device, height, width)
        self._num_timesteps = len(timesteps)
        latents = fam.prepare_latents(batch, height, width, cond.embeds.dtype, device, generator, latents)
        if reuse is not None:
            reuse = reuse.to(device=device, dtype=latents.dtype)
            if reuse.shape[1:] != latents.shape:
                raise UserError(
                    f"sem_guidance has per-step shape {tuple(reuse.shape[1:])}; this call's latents are {tuple(latents.shape)}."
                )
        extra = fam.step_kwargs(generator, eta)
        if concepts is None:
            refresh_interval(edit_refresh, num_inference_steps)  # checks the value
        uncond_refresh = refresh_guidance(guidance_refresh, do_cfg)
        self.last_guidance = concepts and (
            concepts if edit_groups else concepts.group(0)
        )  # segakit.sega.honest reads it
        recorded = None
        if record_guidance and guided:
            recorded = torch.zeros(
                (len(timesteps), *latents.shape), dtype=latents.dtype, device=record_device or device
            )

        # h-space directions: a mid-block hook only when some are given, so plain calls run the U-Net untouched
        h_offset, shift = None, contextlib.nullcontext()
        if directions:
            site = fam.hspace_site(height, width, directions_site(directions))
            h_offset = total_offset(directions, batch, site.shape, device, latents.dtype)
            shift = BlockShift(site.module)

        first = 1 if do_cfg else 0  # the prompt's rows; concepts follow them
        unet_cond, unet_key = base, None
        with self.progress_bar(total=len(timesteps)) as bar, shift:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    break
                rows = concepts.due(i) if concepts is not None else []  # the concepts computed at this step
                skip = uncond_refresh is not None and not uncond_refresh.due(i, [0])  # no unconditional row
                if (skip, *rows) != unet_key:
                    head = base.rows(batch, 2 * batch) if skip else base
                    unet_cond = Conditioning.cat([head, *(edit_conds[k] for k in rows)])
                    unet_key = (skip, *rows)
                    row_shift = conditional_rows(h_offset, len(unet_cond) // batch + skip, do_cfg)
                    row_shift = row_shift[batch:] if skip and row_shift is not None else row_shift
                if h_offset is not None:
                    shift.set(row_shift)
                # rows: the base branches over every image, then each concept over the images of its group
                parts = [latents] * (first + 1 - skip) + [latents[concepts.images(k)] for k in rows]
                x = torch.cat(parts) if len(parts) > 1 else latents
                out = fam.predict(
                    x, t, unet_cond, max_unet_batch, {"cross_attention_kwargs": self._cross_attention_kwargs}
                )
                chunks = out.split([len(p) for p in parts])
                chunks = (None, *chunks) if skip else chunks
                ep = chunks[first]
                e0 = chunks[0]  # the unconditional estimate, or the prompt's own where there is none
                if uncond_refresh is not None:  # computed (its offset to ep kept) or rebuilt from the kept offset
                    e0 = uncond_refresh.estimates(i, ep, {} if skip else {0: e0}, [0])[0]
                gamma = None
                if concepts is not None:
                    gamma = concepts.guidance(i, e0, {k: chunks[first + 1 + j] for j, k in enumerate(rows)})
                step_reuse = None if reuse is None else reuse[i]
                record = gamma if gamma is not None else (step_reuse if concepts is None else None)  # this step adds
                if recorded is not None and record is not None:
                    recorded[i].copy_(record, non_blocking=True)
                # classifier-free guidance (a step callback may change the pipe's scale; FLUX's is true CFG's)
                scale = cfg_scale if fam.guidance_embedded else self._guidance_scale
                noise_pred = guided_estimate(e0, ep, scale if do_cfg else None, gamma, step_reuse)
                if do_cfg and guidance_rescale > 0.0:
                    noise_pred = rescale_noise_cfg(noise_pred, ep, guidance_rescale=guidance_rescale)
                latents = self.scheduler.step(noise_pred, t, latents, **extra, return_dict=False)[0]
                if step_callback:
                    latents, new_base = self._run_step_callback(
                        step_callback, i, t, latents, noise_pred, base, batch, do_cfg
                    )
                    if new_base is not base:
                        base, unet_key = new_base, None  # rebuild the denoiser's conditioning next step
                if callback is not None and i % callback_steps == 0:
                    callback(i // getattr(self.scheduler, "order", 1), t, latents)
                bar.update()

        images, nsfw = self.decode(latents, output_type, device, fam)
        self.maybe_free_model_hooks()
        rec = None
        if recorded is not None:
            info = {"prompt": prompts, "num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale,
                    "edits": [e.__dict__ for e in edits], "height": height, "width": width}  # fmt: skip
            rec = RecordedGuidance(recorded, info)
        if not return_dict:
            return (images, nsfw)
        return SegaPipelineOutput(images=images, nsfw_content_detected=nsfw, guidance=rec, edits=edits)
