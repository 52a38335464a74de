"""SegaPipeline on the rectified-flow transformers: SD3 / SD3.5 and FLUX.1.

These classes only name their family's components (as diffusers' ``StableDiffusion3Pipeline`` and
``FluxPipeline`` do, so ``from_pipe`` and ``from_pretrained`` move components across unchanged); the call,
the edits, recorded guidance and the output are :class:`~segakit.sega.pipeline.SegaPipeline`'s, over the
family adapter (:mod:`segakit.core.families`). ``SegaPipeline.from_pretrained(folder)`` and
``SegaPipeline.from_pipe(pipe)`` return one of these when the model is one of these families.
"""

# no `from __future__ import annotations`: diffusers' from_pipe reads these __init__ annotations as classes
from diffusers import (
    AutoencoderKL,
    DiffusionPipeline,
    FlowMatchEulerDiscreteScheduler,
    FluxTransformer2DModel,
    SD3Transformer2DModel,
)
from diffusers.image_processor import VaeImageProcessor
from transformers import (
    CLIPImageProcessor,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    CLIPVisionModelWithProjection,
    SiglipImageProcessor,
    SiglipVisionModel,
    T5EncoderModel,
    T5TokenizerFast,
)

from segakit.core.errors import UserError
from segakit.sega.loaders import safe_lora_source
from segakit.sega.pipeline import SegaPipeline


class _TransformerPipeline(SegaPipeline):
    """What the transformer families share: set-up after registration, LoRA through diffusers' family loader."""

    def _setup(self) -> None:
        vae = getattr(self, "vae", None)
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 8
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)

    @property
    def is_sdxl(self) -> bool:
        return False

    def load_lora_weights(self, pretrained_model_name_or_path_or_dict, adapter_name=None, **kwargs) -> None:
        """diffusers' LoRA loader of this family (into the same modules); ``.safetensors`` only."""
        source = safe_lora_source(pretrained_model_name_or_path_or_dict, kwargs)
        try:
            self.family.reference().load_lora_weights(source, adapter_name=adapter_name, **kwargs)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            name = source if isinstance(source, str) else "the state dict"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"LoRA {name!r} could not be loaded into this model: {first}") from None

    def image_prompt(self, base, edit_conds, image, embeds, device, batch, do_cfg):
        return base, edit_conds  # refused earlier in the call on transformer families


class SegaSD3Pipeline(_TransformerPipeline):
    """Semantic guidance on Stable Diffusion 3 / 3.5 (a folder without T5 loads as it is)."""

    family_names = ("sd3",)
    model_cpu_offload_seq = "text_encoder->text_encoder_2->text_encoder_3->transformer->vae"
    _optional_components = ["text_encoder_3", "tokenizer_3", "image_encoder", "feature_extractor"]

    def __init__(self, transformer: SD3Transformer2DModel, scheduler: FlowMatchEulerDiscreteScheduler, vae: AutoencoderKL,
                 text_encoder: CLIPTextModelWithProjection, tokenizer: CLIPTokenizer,
                 text_encoder_2: CLIPTextModelWithProjection, tokenizer_2: CLIPTokenizer,
                 text_encoder_3: T5EncoderModel = None, tokenizer_3: T5TokenizerFast = None,
                 image_encoder: SiglipVisionModel = None, feature_extractor: SiglipImageProcessor = None) -> None:  # fmt: skip
        DiffusionPipeline.__init__(self)
        self.register_modules(
            vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, text_encoder_3=text_encoder_3,
            tokenizer=tokenizer, tokenizer_2=tokenizer_2, tokenizer_3=tokenizer_3, transformer=transformer,
            scheduler=scheduler, image_encoder=image_encoder, feature_extractor=feature_extractor,
        )  # fmt: skip
        self._setup()


class SegaFluxPipeline(_TransformerPipeline):
    """Semantic guidance on FLUX.1 (dev, schnell): see :mod:`segakit.core.families.flux` for the guidance rule."""

    family_names = ("flux",)
    model_cpu_offload_seq = "text_encoder->text_encoder_2->image_encoder->transformer->vae"
    _optional_components = ["image_encoder", "feature_extractor"]

    def __init__(self, scheduler: FlowMatchEulerDiscreteScheduler, vae: AutoencoderKL, text_encoder: CLIPTextModel,
                 tokenizer: CLIPTokenizer, text_encoder_2: T5EncoderModel, tokenizer_2: T5TokenizerFast,
                 transformer: FluxTransformer2DModel, image_encoder: CLIPVisionModelWithProjection = None,
                 feature_extractor: CLIPImageProcessor = None) -> None:  # fmt: skip
        DiffusionPipeline.__init__(self)
        self.register_modules(
            vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
            tokenizer_2=tokenizer_2, transformer=transformer, scheduler=scheduler, image_encoder=image_encoder,
            feature_extractor=feature_extractor,
        )  # fmt: skip
        self._setup()


__all__ = ["SegaFluxPipeline", "SegaSD3Pipeline"]
