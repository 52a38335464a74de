"""IP-Adapter on SegaPipeline through diffusers' IPAdapterMixin: small random components, an image encoder and
IP-Adapter weights (image projection, to_k_ip / to_v_ip per cross-attention layer) made here, offline.

Without edits SegaPipeline must give diffusers' StableDiffusionPipeline's pixels with the same adapter; with
edits, every edit branch sees the empty image (the unconditional branch's), so an edit's direction stays the
text concept's."""

import copy

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from PIL import Image
from safetensors.torch import save_file
from tiny_models import sd_components
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from segakit import Edit, SegaPipeline
from segakit.core.errors import UserError

KW = dict(num_inference_steps=3, output_type="np")
TOKENS = 4  # diffusers' ImageProjection for ip-adapter_sd15 files: 4 image tokens


def _image_encoder(embed_dim: int = 16) -> CLIPVisionModelWithProjection:
    torch.manual_seed(3)
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=37, projection_dim=embed_dim, num_hidden_layers=2,
                              num_attention_heads=4, image_size=32, patch_size=8)  # fmt: skip
    return CLIPVisionModelWithProjection(config).eval()


def _ip_adapter_file(unet, path, embed_dim: int = 16):
    """An ip-adapter_sd15-style safetensors file with random weights for ``unet``'s cross-attention layers."""
    torch.manual_seed(4)
    cross = unet.config.cross_attention_dim
    tensors = {
        "image_proj.proj.weight": torch.randn(cross * TOKENS, embed_dim) * 0.2,
        "image_proj.proj.bias": torch.randn(cross * TOKENS) * 0.1,
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    }
    key = 1  # diffusers numbers the adapter's layers 1, 3, 5, ... over the cross-attention processors
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        to_k = unet.get_submodule(name.removesuffix(".processor")).to_k.weight
        tensors[f"ip_adapter.{key}.to_k_ip.weight"] = torch.randn_like(to_k) * 0.5
        tensors[f"ip_adapter.{key}.to_v_ip.weight"] = torch.randn_like(to_k) * 0.5
        key += 2
    save_file(tensors, str(path))
    return path


@pytest.fixture
def pipes(tmp_path):
    parts = sd_components(tmp_path / "parts")
    encoder = _image_encoder()
    theirs = StableDiffusionPipeline(**copy.deepcopy(parts), safety_checker=None, feature_extractor=None,
                                     image_encoder=copy.deepcopy(encoder), requires_safety_checker=False)  # fmt: skip
    ours = SegaPipeline(**parts, image_encoder=encoder)
    _ip_adapter_file(parts["unet"], tmp_path / "ip.safetensors")
    ours.set_progress_bar_config(disable=True)
    plain = ours("a face", generator=torch.Generator().manual_seed(0), **KW).images  # before the adapter is in
    for pipe in (theirs, ours):
        pipe.set_progress_bar_config(disable=True)
        pipe.load_ip_adapter(str(tmp_path), subfolder="", weight_name="ip.safetensors")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    return theirs, ours, image, plain


def test_ip_adapter_matches_diffusers_and_edits_see_the_empty_image(pipes):
    theirs, ours, image, plain = pipes
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    ref = theirs("a face", ip_adapter_image=image, generator=gen(), **KW).images
    got = ours("a face", ip_adapter_image=image, generator=gen(), **KW).images
    assert np.abs(ref - got).max() <= 1e-4  # without edits: diffusers' pixels
    assert np.abs(got - plain).max() > 1e-3  # the image prompt acts

    seen = []

    def record(module, args, kwargs):
        seen.append(kwargs["added_cond_kwargs"]["image_embeds"][0].clone())

    handle = ours.unet.register_forward_pre_hook(record, with_kwargs=True)
    try:
        out = ours("a face", ip_adapter_image=image, edits=[Edit("glasses", scale=5, warmup=0)], num_images_per_prompt=2,
                   generator=[torch.Generator().manual_seed(i) for i in range(2)], **KW)  # fmt: skip
    finally:
        handle.remove()
    assert np.isfinite(out.images).all()
    rows = seen[0]  # [uncond x 2, prompt x 2, glasses x 2]
    assert rows.shape[0] == 6
    assert torch.equal(rows[4:], rows[:2]) and torch.count_nonzero(rows[:2]) == 0
    assert torch.count_nonzero(rows[2:4]) > 0

    for pipe in (theirs, ours):  # scale 0: the model without the adapter
        pipe.set_ip_adapter_scale(0.0)
    assert np.abs(ours("a face", ip_adapter_image=image, generator=gen(), **KW).images - plain).max() <= 1e-4


def test_ip_adapter_needs_safetensors_and_a_loaded_adapter(tmp_path):
    parts = sd_components(tmp_path / "parts")
    pipe = SegaPipeline(**parts, image_encoder=_image_encoder())
    with pytest.raises(UserError, match="load one first"):
        pipe("a face", ip_adapter_image=Image.new("RGB", (32, 32)), **KW)
    (tmp_path / "ip.bin").write_bytes(b"not really")
    with pytest.raises(UserError, match="safetensors"):
        pipe.load_ip_adapter(str(tmp_path), subfolder="", weight_name="ip.bin")
