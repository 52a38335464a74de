"""Write diffusers components as one original-layout ("LDM") Stable Diffusion checkpoint, the kind
``from_single_file`` reads: U-Net under ``model.diffusion_model.``, autoencoder under ``first_stage_model.``,
CLIP text encoder under ``cond_stage_model.transformer.``.

The inverse of diffusers' ``convert_ldm_*_checkpoint`` key maps (diffusers ships only that direction), for the
block layouts the tiny test models use; a test loads the file back and compares pixels, which checks it.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors.torch import save_file

_RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
           ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]  # fmt: skip
_UNET_TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}  # fmt: skip
_VAE_ATTN = [("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")]


def _resnet(rest: str) -> str:
    for new, old in _RESNET:
        if rest.startswith(new + "."):
            return old + rest[len(new) :]
    return rest


def unet_to_ldm(state: dict, config) -> dict:
    n = config["layers_per_block"] + 1
    up_has_attn = {i: "CrossAttn" in t for i, t in enumerate(config["up_block_types"])}
    out = {}
    for key, value in state.items():
        head = key.rsplit(".", 1)[0]
        if head in _UNET_TOP:
            out[_UNET_TOP[head] + key[len(head) :]] = value
        elif m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
            b, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
            idx = n * b + j + 1
            out[f"input_blocks.{idx}.0.{_resnet(rest)}" if kind == "resnets" else f"input_blocks.{idx}.1.{rest}"] = (
                value
            )
        elif m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            out[f"input_blocks.{n * (int(m[1]) + 1)}.0.op.{m[2]}"] = value
        elif m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", key):
            out[f"middle_block.{2 * int(m[1])}.{_resnet(m[2])}"] = value
        elif m := re.match(r"mid_block\.attentions\.0\.(.*)", key):
            out[f"middle_block.1.{m[1]}"] = value
        elif m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
            b, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
            idx = n * b + j
            out[f"output_blocks.{idx}.0.{_resnet(rest)}" if kind == "resnets" else f"output_blocks.{idx}.1.{rest}"] = (
                value
            )
        elif m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
            b = int(m[1])
            out[f"output_blocks.{n * b + n - 1}.{2 if up_has_attn[b] else 1}.conv.{m[2]}"] = value
        else:
            raise KeyError(f"no LDM name for U-Net key {key}")
    return out


def vae_to_ldm(state: dict, config) -> dict:
    blocks = len(config["down_block_types"])
    out = {}
    for key, value in state.items():
        new = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        new = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", new)
        new = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", new)
        new = re.sub(
            r"decoder\.up_blocks\.(\d+)\.resnets\.", lambda m: f"decoder.up.{blocks - 1 - int(m[1])}.block.", new
        )
        new = re.sub(
            r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
            lambda m: f"decoder.up.{blocks - 1 - int(m[1])}.upsample.",
            new,
        )
        new = re.sub(r"mid_block\.resnets\.(\d+)\.", lambda m: f"mid.block_{int(m[1]) + 1}.", new)
        if "mid_block.attentions.0." in new:
            new = new.replace("mid_block.attentions.0.", "mid.attn_1.")
            for d, ldm in _VAE_ATTN:
                new = new.replace(f"attn_1.{d}.", f"attn_1.{ldm}.")
        out[new] = value
    return out


def save_ldm_checkpoint(components: dict, path: Path) -> Path:
    """U-Net, autoencoder and (SD 1.x) text encoder of ``components`` as one .safetensors file."""
    ckpt: dict[str, torch.Tensor] = {}
    unet, vae = components["unet"], components["vae"]
    ckpt.update({"model.diffusion_model." + k: v for k, v in unet_to_ldm(unet.state_dict(), unet.config).items()})
    ckpt.update({"first_stage_model." + k: v for k, v in vae_to_ldm(vae.state_dict(), vae.config).items()})
    for k, v in components["text_encoder"].state_dict().items():
        k = k if k.startswith("text_model.") else "text_model." + k
        ckpt["cond_stage_model.transformer." + k] = v
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in ckpt.items()}, str(path))
    return path
