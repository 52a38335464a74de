"""Small diffusers components with random weights, built from configs (no network).

They are the test bench for parity with diffusers' own pipelines: same components, same seed, same
steps, so any difference comes from the sampling code.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from segakit.train.tokenizer import bytes_to_unicode


def make_tokenizer(folder: Path, max_length: int = 16) -> CLIPTokenizer:
    """A byte-level CLIP tokenizer with a handful of merges: any text tokenizes."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = bytes_to_unicode()
    vocab = {c: i for i, c in enumerate(chars)}
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    merges = ["g l", "gl a", "s s</w>", "e s</w>", "h a", "c e</w>"]
    for m in merges:
        vocab[m.replace(" ", "")] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=max_length)


def _text_config(vocab_size: int, hidden: int = 32, projection_dim: int = 32) -> CLIPTextConfig:
    return CLIPTextConfig(
        bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
        hidden_size=hidden, intermediate_size=37, layer_norm_eps=1e-5, num_attention_heads=4,
        num_hidden_layers=3, vocab_size=vocab_size, max_position_embeddings=32, projection_dim=projection_dim,
        hidden_act="gelu",
    )  # fmt: skip


def _vae() -> AutoencoderKL:
    return AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2, norm_num_groups=32,
    )  # fmt: skip


def _scheduler(prediction_type: str = "epsilon") -> DDIMScheduler:
    return DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
        set_alpha_to_one=False, prediction_type=prediction_type, steps_offset=1,
    )  # fmt: skip


def sd_components(tmp: Path, v_prediction: bool = False, seed: int = 0) -> dict:
    """SD 1.x-shaped (or, with ``v_prediction``, SD 2.x-shaped) components."""
    torch.manual_seed(seed)
    tokenizer = make_tokenizer(tmp / "tokenizer")
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=(2, 4) if v_prediction else 8,
        use_linear_projection=v_prediction, norm_num_groups=32,
    )  # fmt: skip
    return {
        "unet": unet.eval(),
        "vae": _vae().eval(),
        "text_encoder": CLIPTextModel(_text_config(len(tokenizer))).eval(),
        "tokenizer": tokenizer,
        "scheduler": _scheduler("v_prediction" if v_prediction else "epsilon"),
    }


def sdxl_components(tmp: Path, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    tokenizer = make_tokenizer(tmp / "tokenizer")
    tokenizer_2 = make_tokenizer(tmp / "tokenizer_2")
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80, cross_attention_dim=64, norm_num_groups=1,
    )  # fmt: skip
    return {
        "unet": unet.eval(),
        "vae": _vae().eval(),
        "text_encoder": CLIPTextModel(_text_config(len(tokenizer))).eval(),
        "tokenizer": tokenizer,
        "text_encoder_2": CLIPTextModelWithProjection(_text_config(len(tokenizer_2))).eval(),
        "tokenizer_2": tokenizer_2,
        "scheduler": _scheduler(),
    }


def make_lora(components: dict, path: Path, rank: int = 4, seed: int = 1, text_encoders=("text_encoder",)) -> Path:
    """A LoRA for these components (U-Net attention and the text encoders' attention), saved as diffusers
    saves one (.safetensors). The adapters go onto copies; ``components`` stay as they are."""
    import copy

    from diffusers import StableDiffusionXLPipeline
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(seed)
    unet = copy.deepcopy(components["unet"])
    unet.add_adapter(
        LoraConfig(
            r=rank, lora_alpha=rank, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False
        )
    )
    layers = {"unet_lora_layers": get_peft_model_state_dict(unet)}
    for name in text_encoders:
        encoder = copy.deepcopy(components[name])
        # peft directly: transformers' own add_adapter insists on a newer peft than PyPI may have
        config = LoraConfig(
            r=rank, lora_alpha=rank, target_modules=["q_proj", "k_proj", "v_proj", "out_proj"], init_lora_weights=False
        )
        encoder = inject_adapter_in_model(config, encoder)
        layers[f"{name}_lora_layers"] = get_peft_model_state_dict(encoder)
    path.parent.mkdir(parents=True, exist_ok=True)
    StableDiffusionXLPipeline.save_lora_weights(path.parent, weight_name=path.name, safe_serialization=True, **layers)
    return path


def make_embedding(text_encoder, path: Path, token: str, vectors: int = 1, seed: int = 2) -> Path:
    """A textual-inversion embedding in diffusers' format ({token: (vectors, dim)}), as .safetensors."""
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    dim = text_encoder.get_input_embeddings().weight.shape[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({token: torch.randn(vectors, dim, generator=gen)}, str(path))
    return path
