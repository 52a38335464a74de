"""What a diffusers user reaches for on a Stable Diffusion pipeline, on :class:`SegaPipeline` too.

Each feature is diffusers' own mixin or model method; this module only adds segakit's rules at the
door (safetensors only, errors a user can act on) and picks the SDXL variant where the family needs one:

- LoRA: ``load_lora_weights``, ``set_adapters``, ``fuse_lora``, ``unfuse_lora``, ``unload_lora_weights``
  (``StableDiffusionLoraLoaderMixin``; ``StableDiffusionXLLoraLoaderMixin`` for SDXL components);
- textual inversion: ``load_textual_inversion`` (``TextualInversionLoaderMixin``);
- one-file checkpoints: ``from_single_file`` (``FromSingleFileMixin``), ``.safetensors`` only;
- memory: ``enable_vae_slicing`` / ``enable_vae_tiling`` (the autoencoder's own switches),
  ``enable_model_cpu_offload`` (``DiffusionPipeline``, needs accelerate and an accelerator);
- FreeU and fused QKV projections: ``enable_freeu`` / ``disable_freeu`` (``StableDiffusionMixin``);
- IP-Adapter: ``load_ip_adapter``, ``set_ip_adapter_scale``, ``unload_ip_adapter`` (``IPAdapterMixin``) and the
  call's ``ip_adapter_image`` / ``ip_adapter_image_embeds``, encoded by diffusers' own ``encode_image`` and
  ``prepare_ip_adapter_image_embeds``. The image prompt conditions the prompt branch; the unconditional branch
  and every edit concept's branch get the empty image, so an edit's direction (concept minus unconditional)
  stays the text concept's alone, as without an image prompt.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers.loaders import (
    FromSingleFileMixin,
    IPAdapterMixin,
    StableDiffusionLoraLoaderMixin,
    StableDiffusionXLLoraLoaderMixin,
    TextualInversionLoaderMixin,
)
from diffusers.pipelines.pipeline_utils import StableDiffusionMixin
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from safetensors import SafetensorError

from segakit.core.errors import UserError
from segakit.core.loading import looks_like_file, single_file_checkpoint, weights_file

SD_LORA_MODULES = ["unet", "text_encoder"]
SDXL_LORA_MODULES = ["unet", "text_encoder", "text_encoder_2"]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def safe_lora_source(source, kwargs: dict):
    """A LoRA source checked for segakit's rule: a file must be ``.safetensors`` (pickles are refused), and
    ``use_safetensors`` is forced on in ``kwargs``."""
    if looks_like_file(source):
        source = weights_file(source, "LoRA")
    if kwargs.get("use_safetensors") is False:
        raise UserError("use_safetensors=False is not allowed: segakit loads weights from safetensors only.")
    kwargs["use_safetensors"] = True
    return source


class DiffusersFeaturesMixin(StableDiffusionMixin, TextualInversionLoaderMixin, StableDiffusionLoraLoaderMixin, IPAdapterMixin,
                             FromSingleFileMixin):  # fmt: skip
    """diffusers' loaders and switches, with segakit's safetensors-only rule and SDXL dispatch."""

    # diffusers' own image-prompt encoding (the same functions on the SD and SDXL pipelines)
    encode_image = StableDiffusionPipeline.encode_image
    prepare_ip_adapter_image_embeds = StableDiffusionPipeline.prepare_ip_adapter_image_embeds

    def load_ip_adapter(self, pretrained_model_name_or_path_or_dict, subfolder="", weight_name=None, **kwargs) -> None:
        """diffusers' ``load_ip_adapter``; weight files must be ``.safetensors`` (pickles are refused)."""
        names = weight_name if isinstance(weight_name, list) else [weight_name]
        sources = pretrained_model_name_or_path_or_dict
        for source, name in zip(sources if isinstance(sources, list) else [sources] * len(names), names):
            if isinstance(source, dict):
                continue
            if name is None or not str(name).endswith(".safetensors"):
                raise UserError(
                    f"IP-Adapter weights {name!r} are not a .safetensors file; segakit loads safetensors only."
                )
            if looks_like_file(Path(source) / subfolder / name):
                weights_file(Path(source) / subfolder / name, "IP-Adapter")
        IPAdapterMixin.load_ip_adapter(self, pretrained_model_name_or_path_or_dict, subfolder, weight_name, **kwargs)

    def image_prompt(self, base, edit_conds: list, image, embeds, device, batch: int, do_cfg: bool):
        """``base`` and the edit branches' conditionings with the IP-Adapter image embeddings attached (see the module)."""
        if image is None and embeds is None:
            return base, edit_conds
        if getattr(self.unet, "encoder_hid_proj", None) is None:
            raise UserError("ip_adapter_image needs an IP-Adapter; load one first with pipe.load_ip_adapter(...).")
        per_adapter = self.prepare_ip_adapter_image_embeds(image, embeds, device, batch, do_cfg)
        base.image_embeds = [e.to(device) for e in per_adapter]
        empty = [e[:batch] for e in base.image_embeds] if do_cfg else [torch.zeros_like(e) for e in base.image_embeds]
        for c in edit_conds:
            c.image_embeds = empty
        return base, edit_conds

    @property
    def _lora_loadable_modules(self) -> list[str]:  # type: ignore[override]
        return SDXL_LORA_MODULES if getattr(self, "text_encoder_2", None) is not None else SD_LORA_MODULES

    # ---- LoRA

    def load_lora_weights(
        self, pretrained_model_name_or_path_or_dict, adapter_name: str | None = None, **kwargs
    ) -> None:
        """diffusers' ``load_lora_weights``; files must be ``.safetensors`` (pickles are refused)."""
        source = safe_lora_source(pretrained_model_name_or_path_or_dict, kwargs)
        mixin = (
            StableDiffusionXLLoraLoaderMixin
            if self._lora_loadable_modules == SDXL_LORA_MODULES
            else StableDiffusionLoraLoaderMixin
        )
        before = self._adapters_by_component()
        try:
            mixin.load_lora_weights(self, source, adapter_name=adapter_name, **kwargs)
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
            if isinstance(exc, UserError):
                raise
            self._remove_adapters_since(before)
            name = source if isinstance(source, str) else "the state dict"
            raise UserError(f"LoRA {name!r} could not be loaded into this model: {_first_line(exc)}") from None

    def _adapters_by_component(self) -> dict[str, set[str]]:
        from peft.tuners.tuners_utils import BaseTunerLayer

        found: dict[str, set[str]] = {}
        for name in self._lora_loadable_modules:
            model = getattr(self, name, None)
            if model is not None:
                names = set(getattr(model, "peft_config", None) or {})
                for module in model.modules():
                    if isinstance(module, BaseTunerLayer):
                        names.update(getattr(module, "lora_A", {}).keys())
                found[name] = names
        return found

    def _remove_adapters_since(self, before: dict[str, set[str]]) -> None:
        """A LoRA that failed half-way (say in the text encoder) leaves no half-loaded adapter anywhere."""
        from diffusers.models.modeling_utils import ModelMixin
        from diffusers.utils.peft_utils import delete_adapter_layers

        for name, added in self._adapters_by_component().items():
            model = getattr(self, name)
            for adapter in sorted(added - before.get(name, set())):
                if isinstance(model, ModelMixin) and adapter in (getattr(model, "peft_config", None) or {}):
                    model.delete_adapters(adapter)
                else:
                    delete_adapter_layers(model, adapter)

    def fuse_lora(self, components: list[str] | None = None, lora_scale: float = 1.0, **kwargs) -> None:
        """diffusers' ``fuse_lora`` over every LoRA-capable component this model has (by default)."""
        super().fuse_lora(components=components or self._lora_loadable_modules, lora_scale=lora_scale, **kwargs)

    def unfuse_lora(self, components: list[str] | None = None, **kwargs) -> None:
        super().unfuse_lora(components=components or self._lora_loadable_modules, **kwargs)

    # ---- textual inversion

    def load_textual_inversion(
        self, pretrained_model_name_or_path, token=None, tokenizer=None, text_encoder=None, **kwargs
    ):
        """diffusers' ``load_textual_inversion``; files must be ``.safetensors`` (pickles are refused)."""
        sources = (
            pretrained_model_name_or_path
            if isinstance(pretrained_model_name_or_path, list)
            else [pretrained_model_name_or_path]
        )
        sources = [weights_file(s, "Embedding") if looks_like_file(s) else s for s in sources]
        if kwargs.get("use_safetensors") is False:
            raise UserError("use_safetensors=False is not allowed: segakit loads weights from safetensors only.")
        kwargs["use_safetensors"] = True
        source = sources if isinstance(pretrained_model_name_or_path, list) else sources[0]
        try:
            if (
                isinstance(source, str)
                and tokenizer is None
                and text_encoder is None
                and self._sdxl_embedding(source, token)
            ):
                return None
            return super().load_textual_inversion(
                source, token=token, tokenizer=tokenizer, text_encoder=text_encoder, **kwargs
            )
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
            if isinstance(exc, UserError):
                raise
            raise UserError(f"Embedding {source!r} could not be loaded: {_first_line(exc)}") from None

    def _sdxl_embedding(self, path: str, token: str | None) -> bool:
        """An SDXL embedding file ({"clip_l": ..., "clip_g": ...}) goes into both text encoders; its token is
        ``token`` or the file's name (the convention of the tools that write such files)."""
        if getattr(self, "text_encoder_2", None) is None or not Path(path).is_file():
            return False
        from safetensors import safe_open

        with safe_open(path, framework="pt") as f:
            if set(f.keys()) != {"clip_l", "clip_g"}:
                return False
            clip_l, clip_g = f.get_tensor("clip_l"), f.get_tensor("clip_g")
        token = token or Path(path).stem
        TextualInversionLoaderMixin.load_textual_inversion(
            self, clip_l, token=token, tokenizer=self.tokenizer, text_encoder=self.text_encoder
        )
        TextualInversionLoaderMixin.load_textual_inversion(
            self, clip_g, token=token, tokenizer=self.tokenizer_2, text_encoder=self.text_encoder_2
        )
        return True

    # ---- one-file checkpoints

    @classmethod
    def from_single_file(cls, pretrained_model_link_or_path: str | Path, config: str | Path | None = None, **kwargs):
        """diffusers' ``from_single_file`` for a ``.safetensors`` checkpoint; ``config`` is a diffusers folder or hub id.

        With a local ``config`` folder nothing is downloaded; without one diffusers looks the config up on the hub.
        """
        checkpoint, config = single_file_checkpoint(pretrained_model_link_or_path, config)
        if config is not None and Path(config).is_dir():
            kwargs.setdefault("local_files_only", True)
        try:
            return super().from_single_file(checkpoint, config=config, **kwargs)
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
            if isinstance(exc, UserError):
                raise
            raise UserError(f"Checkpoint {checkpoint!r} could not be loaded: {_first_line(exc)}") from None

    # ---- memory

    def enable_vae_slicing(self) -> None:
        """Decode one image at a time (less memory for many images)."""
        self.vae.enable_slicing()

    def disable_vae_slicing(self) -> None:
        self.vae.disable_slicing()

    def enable_vae_tiling(self) -> None:
        """Decode (and encode) in overlapping tiles (less memory for large images)."""
        self.vae.enable_tiling()

    def disable_vae_tiling(self) -> None:
        self.vae.disable_tiling()
