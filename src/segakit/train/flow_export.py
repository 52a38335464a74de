"""Export a flow run as a stock ``StableDiffusion3Pipeline`` folder (safetensors only, no T5).

    python -m segakit.train.flow --run /work/runs/flow --export /work/runs/flow/export
    python -m segakit.train.flow --run /work/runs/flow --ship src/segakit/assets/embedded-flow --overwrite true

The folder holds the run's EMA transformer, a ``FlowMatchEulerDiscreteScheduler`` with the run's ``shift``, the
autoencoder with ``shift_factor`` 0.0 (SD3's pipeline decodes ``latents / scaling_factor + shift_factor``; the latent
cache stores ``latent * scaling_factor`` with no shift, the U-Net's convention), the SD3 slot of the text encoder
(:func:`segakit.core.embedded_flow.sd3_text_encoder`) as both ``text_encoder`` and ``text_encoder_2`` with the tokenizer
twice, and ``text_encoder_3`` / ``tokenizer_3`` left empty. ``StableDiffusion3Pipeline.from_pretrained(folder)(prompt)``
at its defaults then samples 64x64 images exactly as the model was trained (its 256 zero T5 rows included).
``segakit.json`` records the training steps and config.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from diffusers import SD3Transformer2DModel

from segakit.core.embedded_flow import assemble
from segakit.train.checkpoint import replace_dir
from segakit.train.config import runs_root, text_encoder_path, vae_path
from segakit.train.flow_model import build_scheduler

INFO = {
    "name": "segakit embedded flow model (SD3 MMDiT on the faces world)",
    "image_size": 64,
    "latent_shape": [4, 16, 16],
    "t5_rows": "256 zero rows (the pipeline's default max_sequence_length)",
}


def export(cfg) -> Path:
    """Write ``cfg.export`` from the run at ``cfg.run`` (a :class:`segakit.train.flow.FlowConfig`); returns the folder."""
    root = runs_root()
    run = Path(cfg.run) if cfg.run else root / "flow"
    source = run / "transformer_ema"
    if not (source / "config.json").is_file():
        raise SystemExit(
            f"--run {str(run)!r} has no transformer_ema/ to export; train it first (python -m segakit.train.flow)."
        )
    out = Path(cfg.export)
    if out.exists() and not (out / "model_index.json").is_file():
        raise SystemExit(
            f"--export {str(out)!r} exists and is not an SD3 folder this command wrote; choose another place."
        )
    pipe = assemble(source, build_scheduler(cfg.shift), Path(cfg.text_encoder or text_encoder_path(root)),
                    Path(cfg.tokenizer or root / "tokenizer"), Path(cfg.vae or vae_path(root)))  # fmt: skip
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp, safe_serialization=True)
    training = json.loads((source / "training.json").read_text()) if (source / "training.json").is_file() else {}
    info = {**INFO, "training": {"flow": training}}
    (tmp / "segakit.json").write_text(json.dumps(info, indent=1))
    replace_dir(tmp, out)
    return out


def ship(cfg) -> Path:
    """Write ``cfg.ship``: the shipped part of "embedded-flow" (:mod:`segakit.core.embedded_flow`): the run's EMA
    transformer in float16, its scheduler, ``model_index.json`` and ``segakit.json``; the text encoder, tokenizer and
    autoencoder are the embedded U-Net model's, joined on first load."""
    run = Path(cfg.run) if cfg.run else runs_root() / "flow"
    source = run / "transformer_ema"
    if not (source / "config.json").is_file():
        raise SystemExit(
            f"--run {str(run)!r} has no transformer_ema/ to ship; train it first (python -m segakit.train.flow)."
        )
    out = Path(cfg.ship)
    if out.exists() and any(out.iterdir()) and not cfg.overwrite:
        raise SystemExit(f"--ship {str(out)!r} exists; pass --overwrite true to replace it.")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    transformer = SD3Transformer2DModel.from_pretrained(source, dtype=torch.float32, use_safetensors=True)
    transformer.to(torch.float16).save_pretrained(tmp / "transformer", safe_serialization=True)
    build_scheduler(cfg.shift).save_pretrained(tmp / "scheduler")
    index = {
        "_class_name": "StableDiffusion3Pipeline",
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "transformer": ["diffusers", "SD3Transformer2DModel"],
        "shared_with_embedded": ["text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "vae"],
    }
    (tmp / "model_index.json").write_text(json.dumps(index, indent=1))
    training = json.loads((source / "training.json").read_text()) if (source / "training.json").is_file() else {}
    info = {**INFO, "training": {"flow": training}}
    (tmp / "segakit.json").write_text(json.dumps(info, indent=1))
    replace_dir(tmp, out)
    return out
