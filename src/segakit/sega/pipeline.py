"""SegaPipeline: diffusers components in, semantically guided images out.

One batched U-Net call per denoising step for (unconditional, prompt, alive edits) x images. A concept
past its cool-down leaves the batch (its estimate would never be used again). Works with SD 1.x/2.x
(epsilon or v-prediction) and SDXL components.
"""

from __future__ import annotations

import contextlib
import inspect
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
from diffusers.utils import (
    USE_PEFT_BACKEND,
    BaseOutput,
    scale_lora_layers,
    unscale_lora_layers,
)
from diffusers.utils.torch_utils import randn_tensor
from transformers import (
    CLIPImageProcessor,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    CLIPVisionModelWithProjection,
)

from segakit.core.conditioning import (
    Conditioning,
    encode_sd,
    encode_sdxl,
    is_sdxl,
    sdxl_time_ids,
)
from segakit.core.errors import UserError
from segakit.core.hooks import (
    HSpaceOffset,
    MidBlockShift,
    conditional_rows,
    mid_block_shape,
    total_offset,
)
from segakit.core.loading import load_pipeline
from segakit.sega.callbacks import CallState, StepCallback
from segakit.sega.defaults import edit_defaults
from segakit.sega.diffusers_args import edits_from_diffusers_args
from segakit.sega.fair import fair_call
from segakit.sega.guidance import Edit, QuantileOver, SemanticGuidance
from segakit.sega.loaders import DiffusersFeaturesMixin
from segakit.sega.recorded import RecordedGuidance

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
        return is_sdxl(self.unet)

    # -----------------------------------------------------------------------------------------
    # Conditioning

    def encode_texts(self, texts: list[str], device: torch.device, lora_scale: float | None = None) -> Conditioning:
        """One conditioning row per text, for this pipeline's model family (time ids set later).

        Multi-vector textual-inversion tokens are expanded (diffusers' ``maybe_convert_prompt``); ``lora_scale``
        scales the text encoders' LoRA layers for this encoding, as diffusers does.
        """
        encoders = [e for e in (self.text_encoder, self.text_encoder_2) if e is not None]
        scaled = lora_scale is not None and USE_PEFT_BACKEND
        if scaled:
            self._lora_scale = lora_scale
            for e in encoders:
                scale_lora_layers(e, lora_scale)
        try:
            if self.is_sdxl:
                tokenizers = [t for t in (self.tokenizer, self.tokenizer_2) if t is not None]
                embeds, pooled = encode_sdxl(tokenizers, encoders, texts, device, convert=self.maybe_convert_prompt)
                dtype = (self.text_encoder_2 or self.unet).dtype
                return Conditioning(embeds.to(dtype=dtype, device=device), pooled.to(dtype=dtype, device=device))
            embeds = encode_sd(self.tokenizer, self.text_encoder, self.maybe_convert_prompt(texts, self.tokenizer), device)
            return Conditioning(embeds.to(dtype=self.text_encoder.dtype, device=device))
        finally:
            if scaled:
                for e in encoders:
                    unscale_lora_layers(e, lora_scale)

    def _edit_conditioning(
        self, edits: Sequence[Edit], embeddings: torch.Tensor | None, pooled: torch.Tensor | None, device, lora_scale=None
    ) -> list[Conditioning]:
        """One single-row conditioning per concept (text or precomputed embeddings)."""
        if embeddings is None:
            cond = self.encode_texts([e.prompt or "" for e in edits], device, lora_scale)
            return [cond.rows(k, k + 1) for k in range(len(edits))]
        if self.is_sdxl and pooled is None:
            raise UserError("SDXL models need editing_pooled_embeddings together with editing_prompt_embeddings.")
        embeddings = embeddings.to(device=device, dtype=self.unet.dtype)
        return [
            Conditioning(embeddings[k : k + 1], None if pooled is None else pooled[k : k + 1].to(device, self.unet.dtype))
            for k in range(embeddings.shape[0])
        ]

    # -----------------------------------------------------------------------------------------
    # Sampling pieces

    def prepare_latents(self, batch, height, width, dtype, device, generator, latents=None) -> torch.Tensor:
        shape = (batch, self.unet.config.in_channels, height // self.vae_scale_factor, width // self.vae_scale_factor)
        if isinstance(generator, list) and len(generator) != batch:
            raise UserError(f"{len(generator)} generators were passed for {batch} images; pass one per image.")
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        else:
            if tuple(latents.shape) != shape:
                raise UserError(f"latents have shape {tuple(latents.shape)}; expected {shape}.")
            latents = latents.to(device)
        return latents * self.scheduler.init_noise_sigma

    def _extra_step_kwargs(self, generator, eta: float) -> dict:
        params = set(inspect.signature(self.scheduler.step).parameters)
        kwargs: dict = {}
        if "eta" in params:
            kwargs["eta"] = eta
        if "generator" in params:
            kwargs["generator"] = generator
        return kwargs

    def _unet(self, x: torch.Tensor, t, cond: Conditioning, max_batch: int | None) -> torch.Tensor:
        """The U-Net on all rows, in sub-batches of at most ``max_batch`` rows."""
        extra = {"cross_attention_kwargs": self._cross_attention_kwargs} if self._cross_attention_kwargs else {}
        if not max_batch or x.shape[0] <= max_batch:
            return self.unet(x, t, **cond.unet_kwargs(), **extra, return_dict=False)[0]
        outs = [
            self.unet(x[s : s + max_batch], t, **cond.rows(s, s + max_batch).unet_kwargs(), **extra, return_dict=False)[0]
            for s in range(0, x.shape[0], max_batch)
        ]
        return torch.cat(outs)

    def decode(self, latents: torch.Tensor, output_type: str, device) -> tuple:
        """Latents to images in ``output_type``; runs the safety checker if the model has one."""
        if output_type == "latent":
            return latents, None
        vae = self.vae
        upcast = vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
        dtype = torch.float32 if upcast else vae.dtype
        if upcast:
            vae.to(torch.float32)
        try:
            z = latents.to(dtype)
            mean = getattr(vae.config, "latents_mean", None)
            std = getattr(vae.config, "latents_std", None)
            if mean is not None and std is not None:
                mean_t = torch.tensor(mean).view(1, -1, 1, 1).to(z.device, z.dtype)
                std_t = torch.tensor(std).view(1, -1, 1, 1).to(z.device, z.dtype)
                z = z * std_t / vae.config.scaling_factor + mean_t
            else:
                z = z / vae.config.scaling_factor
            image = vae.decode(z, return_dict=False)[0]
        finally:
            if upcast:
                vae.to(torch.float16)
        nsfw = None
        if self.safety_checker is not None and self.feature_extractor is not None:
            features = self.feature_extractor(self.image_processor.postprocess(image, output_type="pil"), return_tensors="pt")
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
        height = height or self.unet.config.sample_size * self.vae_scale_factor
        width = width or self.unet.config.sample_size * self.vae_scale_factor
        multiple = self.vae_scale_factor
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
        if fair is not None:
            if not hasattr(fair, "offset"):  # Fair Diffusion: SEGA edits per drawn value
                return fair_call(self, call, edits)
            directions = [*(directions or ()), fair]  # a library's draw: an h-space offset whose rows differ by image

        if guidance_scale is None:
            guidance_scale = 5.0 if self.is_sdxl else 7.5
        device = self._execution_device
        batch = len(prompts) * num_images_per_prompt
        do_cfg = guidance_scale > 1.0
        self._guidance_scale, self._guidance_rescale, self._interrupt = guidance_scale, guidance_rescale, False
        self._cross_attention_kwargs = cross_attention_kwargs
        lora_scale = (cross_attention_kwargs or {}).get("scale")
        if edits and not do_cfg:
            logger.warning("guidance_scale <= 1 turns classifier-free guidance off, and with it semantic guidance.")
        use_sega = do_cfg and bool(edits)

        # ---- conditioning: rows [uncond x batch, prompt x batch, edit_k x batch ...]
        cond = self.encode_texts(prompts, device, lora_scale)
        if do_cfg:
            if negative_prompt is None and self.is_sdxl and self.config.force_zeros_for_empty_prompt:
                uncond = Conditioning(torch.zeros_like(cond.embeds), torch.zeros_like(cond.pooled))
            else:
                negs = [negative_prompt or ""] * len(prompts) if not isinstance(negative_prompt, list) else negative_prompt
                if len(negs) != len(prompts):
                    raise UserError(f"{len(negs)} negative prompts were given for {len(prompts)} prompts; give one per prompt.")
                uncond = self.encode_texts(negs, device, lora_scale)
        edit_conds = (
            self._edit_conditioning(edits, editing_prompt_embeddings, editing_pooled_embeddings, device, lora_scale) if use_sega else []
        )
        if self.is_sdxl:
            time_ids = sdxl_time_ids(height, width, cond.embeds.dtype, device)
            for c in [cond, *([uncond] if do_cfg else []), *edit_conds]:
                c.time_ids = time_ids.repeat(len(c), 1)
        cond = cond.repeat_rows(num_images_per_prompt)
        base = Conditioning.cat([uncond.repeat_rows(num_images_per_prompt), cond]) if do_cfg else cond
        # each concept is paired with every image: its row repeated once per image
        edit_conds = [c.repeat_rows(batch) for c in edit_conds]
        base, edit_conds = self.image_prompt(base, edit_conds, ip_adapter_image, ip_adapter_image_embeds, device, batch, do_cfg)

        # ---- reuse of recorded guidance
        reuse = None
        if sem_guidance is not None and do_cfg:
            if isinstance(sem_guidance, RecordedGuidance):
                reuse = sem_guidance.guidance
            elif isinstance(sem_guidance, (list, tuple)):
                reuse = torch.stack([torch.as_tensor(g) for g in sem_guidance])
            else:
                reuse = sem_guidance
            if reuse.shape[0] < num_inference_steps:
                raise UserError(f"sem_guidance holds {reuse.shape[0]} steps; {num_inference_steps} are needed.")

        # ---- sampling
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(0)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)
        latents = self.prepare_latents(batch, height, width, cond.embeds.dtype, device, generator, latents)
        if reuse is not None:
            reuse = reuse.to(device=device, dtype=latents.dtype)
            if reuse.shape[1:] != latents.shape:
                raise UserError(
                    f"sem_guidance has per-step shape {tuple(reuse.shape[1:])}; this call's latents are {tuple(latents.shape)}."
                )
        extra = self._extra_step_kwargs(generator, eta)
        sega = SemanticGuidance(edits, edit_momentum_scale, edit_mom_beta, quantile_over) if use_sega else None
        self.last_guidance = sega  # read after the call for concepts that never acted (segakit.sega.honest)
        recorded = None
        if record_guidance and do_cfg:
            recorded = torch.zeros((len(timesteps), *latents.shape), dtype=latents.dtype, device=record_device or device)

        # h-space directions: a mid-block hook only when some are given, so plain calls run the U-Net untouched
        h_offset, shift = None, contextlib.nullcontext()
        if directions:
            h_shape = mid_block_shape(self.unet, height, width, self.vae_scale_factor)
            h_offset = total_offset(directions, batch, h_shape, device, latents.dtype)
            shift = MidBlockShift(self.unet)

        unet_cond, unet_key = base, None
        with self.progress_bar(total=len(timesteps)) as bar, shift:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    break
                alive = sega.alive(i) if sega is not None else []
                if tuple(alive) != unet_key:
                    unet_cond = Conditioning.cat([base, *(edit_conds[k] for k in alive)])
                    unet_key = tuple(alive)
                    row_shift = conditional_rows(h_offset, len(unet_cond) // batch, do_cfg)
                if h_offset is not None:
                    shift.set(row_shift)
                branches = len(unet_cond) // batch
                x = torch.cat([latents] * branches) if branches > 1 else latents
                x = self.scheduler.scale_model_input(x, t)
                out = self._unet(x, t, unet_cond, max_unet_batch)

                if do_cfg:
                    chunks = out.chunk(branches)
                    e0, ep = chunks[0], chunks[1]
                    guidance = self._guidance_scale * (ep - e0)  # classifier-free guidance (a step callback may change the scale)
                    if sega is not None:
                        gamma = sega(i, e0, {k: chunks[2 + j] for j, k in enumerate(alive)})
                        if gamma is not None:
                            guidance = guidance + gamma
                            if recorded is not None:
                                recorded[i].copy_(gamma, non_blocking=True)
                    if reuse is not None:
                        guidance = guidance + reuse[i]
                        if recorded is not None and sega is None:
                            recorded[i].copy_(reuse[i], non_blocking=True)
                    noise_pred = e0 + guidance
                    if guidance_rescale > 0.0:
                        noise_pred = rescale_noise_cfg(noise_pred, ep, guidance_rescale=guidance_rescale)
                else:
                    noise_pred = out
                latents = self.scheduler.step(noise_pred, t, latents, **extra, return_dict=False)[0]
                if step_callback:
                    latents, new_base = self._run_step_callback(step_callback, i, t, latents, noise_pred, base, batch, do_cfg)
                    if new_base is not base:
                        base, unet_key = new_base, None  # rebuild the U-Net's conditioning next step
                if callback is not None and i % callback_steps == 0:
                    callback(i // getattr(self.scheduler, "order", 1), t, latents)
                bar.update()

        images, nsfw = self.decode(latents, output_type, device)
        self.maybe_free_model_hooks()
        rec = None
        if recorded is not None:
            rec = RecordedGuidance(
                recorded,
                {
                    "prompt": prompts,
                    "num_inference_steps": num_inference_steps,
                    "guidance_scale": guidance_scale,
                    "edits": [e.__dict__ for e in edits],
                    "height": height,
                    "width": width,
                },
            )
        if not return_dict:
            return (images, nsfw)
        return SegaPipelineOutput(images=images, nsfw_content_detected=nsfw, guidance=rec, edits=edits)
