"""The embedded flow model ("embedded-flow"): what segakit ships of it, and the stock diffusers folder built from it.

The model is a small SD3 MMDiT trained with rectified flow on the faces world (``python -m segakit.train.flow``,
docs/training.md) over the embedded U-Net model's text encoder, tokenizer and autoencoder. segakit ships only what
is its own, under ``src/segakit/assets/embedded-flow``: the transformer (float16), the scheduler, ``model_index.json``
and ``segakit.json``. The first load writes the complete ``StableDiffusion3Pipeline`` folder once, atomically, into
segakit's cache (``SEGAKIT_CACHE``, default ``~/.cache/segakit``), named by a hash of the shipped files, and every
later load reads it; stock diffusers loads that folder as it is::

    from diffusers import StableDiffusion3Pipeline
    from segakit.core.embedded_flow import folder
    pipe = StableDiffusion3Pipeline.from_pretrained(folder(), text_encoder_3=None, tokenizer_3=None)

SD3's two CLIP slots both hold :func:`sd3_text_encoder` of the one embedded text encoder, and the autoencoder gets
``shift_factor`` 0.0 (the U-Net's convention: latents are only scaled); see :mod:`segakit.train.flow_text`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from segakit.core.assets import asset_path
from segakit.core.errors import UserError

EMBEDDED_FLOW = "embedded-flow"


def shipped_path() -> Path:
    """The shipped part of the embedded flow model (the transformer, scheduler and index)."""
    return asset_path("embedded-flow")


def cache_root() -> Path:
    return Path(os.environ.get("SEGAKIT_CACHE") or Path.home() / ".cache" / "segakit").expanduser()


def sd3_text_encoder(text_encoder: CLIPTextModel) -> CLIPTextModelWithProjection:
    """The embedded text encoder as an SD3 CLIP slot: one extra all-zero layer (an exact identity) and an
    identity ``text_projection`` (see the module docstring)."""
    cfg = text_encoder.config.to_dict()
    cfg.update(
        num_hidden_layers=text_encoder.config.num_hidden_layers + 1,
        projection_dim=text_encoder.config.hidden_size,
        architectures=["CLIPTextModelWithProjection"],
    )
    for key in ("model_type", "transformers_version", "_name_or_path"):
        cfg.pop(key, None)
    out = CLIPTextModelWithProjection(CLIPTextConfig(**cfg)).to(torch.float32).eval()
    source = {k.removeprefix("text_model."): v for k, v in text_encoder.state_dict().items()}
    missing, unexpected = out.text_model.load_state_dict(source, strict=False)
    new_layer = f"encoder.layers.{text_encoder.config.num_hidden_layers}."
    if unexpected or any(not k.startswith(new_layer) for k in missing):
        raise ValueError(f"the text encoder's weights do not fit an SD3 slot: {(unexpected + missing)[:3]}")
    last = out.text_model.encoder.layers[-1]
    with torch.no_grad():
        for p in last.parameters():
            p.zero_()
        out.text_projection.weight.copy_(torch.eye(text_encoder.config.hidden_size))
    return out


def flow_vae(folder: Path):
    """The autoencoder at ``folder`` with ``shift_factor`` 0.0 (null in the U-Net's folder; SD3's pipeline needs a
    number)."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(folder, dtype=torch.float32, use_safetensors=True)
    vae.register_to_config(shift_factor=0.0)
    return vae


def _files_hash(*folders: Path) -> str:
    h = hashlib.sha256()
    for root in folders:
        for f in sorted(p for p in root.rglob("*") if p.is_file()):
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def assemble(transformer_folder: Path, scheduler, text_encoder: Path, tokenizer: Path, vae: Path):
    """The embedded flow model as a ``StableDiffusion3Pipeline`` (float32): the transformer at ``transformer_folder``,
    ``scheduler``, both CLIP slots :func:`sd3_text_encoder` of the ``CLIPTextModel`` at ``text_encoder`` with the
    tokenizer at ``tokenizer`` twice, the autoencoder at ``vae`` (:func:`flow_vae`) and no T5."""
    from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTokenizer

    slot = sd3_text_encoder(CLIPTextModel.from_pretrained(text_encoder, dtype=torch.float32, use_safetensors=True))
    words = CLIPTokenizer.from_pretrained(tokenizer)
    return StableDiffusion3Pipeline(
        transformer=SD3Transformer2DModel.from_pretrained(transformer_folder, dtype=torch.float32, use_safetensors=True),
        scheduler=scheduler, vae=flow_vae(vae), text_encoder=slot, tokenizer=words, text_encoder_2=slot,
        tokenizer_2=words, text_encoder_3=None, tokenizer_3=None,
    )  # fmt: skip


def build(out: Path, shipped: Path, unet_model: Path) -> Path:
    """Write the complete ``StableDiffusion3Pipeline`` folder ``out`` from the shipped part and the embedded U-Net
    model's text encoder, tokenizer and autoencoder (float32 throughout)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(shipped / "scheduler")
    pipe = assemble(shipped / "transformer", scheduler, unet_model / "text_encoder", unet_model / "tokenizer",
                    unet_model / "vae")  # fmt: skip
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp, safe_serialization=True)
    shutil.copy2(shipped / "segakit.json", tmp / "segakit.json")
    try:
        tmp.rename(out)
    except OSError:  # another process built it first: theirs is the same folder
        shutil.rmtree(tmp, ignore_errors=True)
        if not (out / "model_index.json").is_file():
            raise
    return out


def folder() -> Path:
    """The complete diffusers folder of the embedded flow model (built on first use, then reused)."""
    shipped = shipped_path()
    if not (shipped / "transformer" / "config.json").is_file():
        raise UserError(
            "The embedded flow model is not in this installation yet (src/segakit/assets/embedded-flow is empty); "
            "pass --model with a diffusers folder, or train it with `python -m segakit.train.flow`."
        )
    unet_model = asset_path("embedded")
    key = _files_hash(shipped, unet_model / "text_encoder", unet_model / "tokenizer", unet_model / "vae")
    out = cache_root() / f"{EMBEDDED_FLOW}-{key}"
    if (out / "model_index.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    return build(out, shipped, unet_model)


def is_embedded_flow_folder(path: Path) -> bool:
    """Whether ``path`` is a folder :func:`folder` built (what segakit names "embedded-flow")."""
    try:
        path = Path(path).expanduser().resolve()
        return path.parent == cache_root().resolve() and path.name.startswith(EMBEDDED_FLOW + "-")
    except (OSError, RuntimeError, ValueError):
        return False


def info() -> dict:
    """The shipped ``segakit.json`` (training steps and configuration)."""
    return json.loads((shipped_path() / "segakit.json").read_text())
