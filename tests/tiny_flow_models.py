"""Small SD3 and FLUX components with random weights, built from configs (no network, tokenizers included).

The test bench for the transformer families' parity with diffusers' ``StableDiffusion3Pipeline`` and
``FluxPipeline``: same components, same seed, same steps.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel, SD3Transformer2DModel
from tiny_models import _text_config, make_tokenizer
from transformers import CLIPTextModel, CLIPTextModelWithProjection, T5Config, T5EncoderModel, T5Tokenizer


def _vae(shift: float | None = 0.0609) -> AutoencoderKL:
    return AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4, shift_factor=shift,
        scaling_factor=1.5035, down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
        norm_num_groups=32, use_quant_conv=False, use_post_quant_conv=False,
    )  # fmt: skip


def t5_tokenizer() -> T5Tokenizer:
    """A unigram T5 tokenizer over letters: any lower-case text tokenizes."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(c, -1.0) for c in "abcdefghijklmnopqrstuvwxyz▁+-"]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def _t5(vocab: int) -> T5EncoderModel:
    return T5EncoderModel(T5Config(vocab_size=vocab, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4)).eval()


def sd3_components(tmp: Path, seed: int = 0, with_t5: bool = False) -> dict:
    """SD3-shaped components: two CLIP encoders (hidden 32 each), optionally a T5, a one-layer MMDiT."""
    torch.manual_seed(seed)
    tokenizer, tokenizer_2 = make_tokenizer(tmp / "tokenizer"), make_tokenizer(tmp / "tokenizer_2")
    transformer = SD3Transformer2DModel(
        sample_size=16, patch_size=2, in_channels=4, num_layers=2, attention_head_dim=8, num_attention_heads=4,
        caption_projection_dim=32, joint_attention_dim=64, pooled_projection_dim=64, out_channels=4,
    )  # fmt: skip
    components = {
        "transformer": transformer.eval(),
        "vae": _vae().eval(),
        "text_encoder": CLIPTextModelWithProjection(_text_config(len(tokenizer))).eval(),
        "tokenizer": tokenizer,
        "text_encoder_2": CLIPTextModelWithProjection(_text_config(len(tokenizer_2))).eval(),
        "tokenizer_2": tokenizer_2,
        "text_encoder_3": None,
        "tokenizer_3": None,
        "scheduler": FlowMatchEulerDiscreteScheduler(shift=3.0),
    }
    if with_t5:
        components["tokenizer_3"] = t5_tokenizer()
        components["text_encoder_3"] = T5EncoderModel(
            T5Config(vocab_size=len(components["tokenizer_3"]), d_model=64, d_kv=8, d_ff=37, num_layers=2, num_heads=4)
        ).eval()
    return components


def flux_components(tmp: Path, seed: int = 0, guidance_embeds: bool = True) -> dict:
    """FLUX-shaped components: CLIP (pooled) and T5 (tokens), one double and one single block.
    ``guidance_embeds=False`` is FLUX.1-schnell's shape (no distilled guidance)."""
    torch.manual_seed(seed)
    tokenizer = make_tokenizer(tmp / "tokenizer")
    tokenizer_2 = t5_tokenizer()
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8], guidance_embeds=guidance_embeds,
    )  # fmt: skip
    return {
        "transformer": transformer.eval(),
        "vae": _vae().eval(),
        "text_encoder": CLIPTextModel(_text_config(len(tokenizer))).eval(),
        "tokenizer": tokenizer,
        "text_encoder_2": _t5(len(tokenizer_2)),
        "tokenizer_2": tokenizer_2,
        "scheduler": FlowMatchEulerDiscreteScheduler(),
    }


def flow_pipe(cls, components: dict):
    """``SegaPipeline.from_pipe(cls(**components))`` with its progress bar off: the SD3 or FLUX test bench."""
    from segakit import SegaPipeline

    pipe = SegaPipeline.from_pipe(cls(**components))
    pipe.set_progress_bar_config(disable=True)
    return pipe
