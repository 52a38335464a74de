"""Assemble the trained parts into the shipped model: a standard diffusers StableDiffusionPipeline folder.

    src/segakit/assets/embedded/
      model_index.json        StableDiffusionPipeline; safety_checker / feature_extractor null
      unet/ vae/ text_encoder/ tokenizer/ scheduler/
      clip/                   the whole CLIPModel (+ tokenizer, image processor) for CLIP-T / CLIP-I scores
      segakit.json            provenance: training steps, scaling factor, sizes

U-Net, VAE and CLIP weights are float16 safetensors (half the size; rounding the weights costs far less
than the models' own error); the text encoder is float32 so that a plain load runs in float32 as it is::

    StableDiffusionPipeline.from_pretrained("src/segakit/assets/embedded")   # float32 on a CPU

    python -m segakit.train.embedded                 # from $SEGAKIT_RUNS (default runs/embedded)
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import CLIPModel, CLIPTextModel, CLIPTokenizer

from segakit.train.checkpoint import replace_dir
from segakit.train.clip import image_processor
from segakit.train.config import clip_path, parse_config, runs_root, text_encoder_path, vae_path

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "assets" / "embedded"


@dataclass
class AssembleConfig:
    runs: str = ""  # default: $SEGAKIT_RUNS
    out: str = ""  # default: src/segakit/assets/embedded
    fp16: bool = True
    max_mb: float = 60.0
    check: bool = True  # load the result with stock diffusers and generate one image


@dataclass
class Parts:
    tokenizer: Path
    vae: Path
    clip: Path
    text_encoder: Path
    unet: Path
    scheduler: Path

    @classmethod
    def under(cls, root: Path) -> Parts:
        return cls(
            tokenizer=root / "tokenizer",
            vae=vae_path(root),
            clip=clip_path(root),
            text_encoder=text_encoder_path(root),
            unet=root / "unet" / "unet_ema",
            scheduler=root / "unet" / "scheduler",
        )

    def missing(self) -> list[Path]:
        return [p for p in vars(self).values() if not Path(p).is_dir()]


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def prefix_text_encoder_keys(folder: Path) -> None:
    """Store the text encoder with SD's key names (``text_model.embeddings...``).

    transformers 5 writes ``CLIPTextModel`` keys without the ``text_model.`` prefix; transformers 4 needs
    it, and 5 reads both, so the prefixed form loads everywhere.
    """
    for path in folder.glob("*.safetensors"):
        with safe_open(path, "pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        if all(k.startswith("text_model.") for k in tensors):
            continue
        fixed = {(k if k.startswith("text_model.") else "text_model." + k): v for k, v in tensors.items()}
        save_file(fixed, path, metadata={**meta, "format": "pt"})


def _training_json(folder: Path) -> dict:
    f = folder / "training.json"
    return json.loads(f.read_text()) if f.is_file() else {}


def assemble(parts: Parts, out: Path, fp16: bool = True, max_mb: float = 60.0) -> Path:
    missing = parts.missing()
    if missing:
        raise SystemExit(f"cannot assemble: missing {', '.join(map(str, missing))}; train those parts first.")
    f32 = torch.float32
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL.from_pretrained(parts.vae, torch_dtype=f32),
        text_encoder=CLIPTextModel.from_pretrained(parts.text_encoder, torch_dtype=f32),
        tokenizer=CLIPTokenizer.from_pretrained(parts.tokenizer),
        unet=UNet2DConditionModel.from_pretrained(parts.unet, torch_dtype=f32),
        scheduler=DDIMScheduler.from_pretrained(parts.scheduler),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    clip = CLIPModel.from_pretrained(parts.clip, torch_dtype=f32)
    # U-Net, VAE and the CLIP scorer in float16 (diffusers upcasts its models to float32 on a plain
    # from_pretrained); the text encoder stays float32 because transformers would load float16 weights as
    # float16 and a plain StableDiffusionPipeline.from_pretrained(path) must run as it is.
    dtype = torch.float16 if fp16 else f32
    pipe.unet.to(dtype=dtype)
    pipe.vae.to(dtype=dtype)
    clip.to(dtype=dtype)
    dtypes = {
        "unet": str(dtype).removeprefix("torch."),
        "vae": str(dtype).removeprefix("torch."),
        "text_encoder": "float32",
        "clip": str(dtype).removeprefix("torch."),
    }
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp, safe_serialization=True)
    prefix_text_encoder_keys(tmp / "text_encoder")
    clip.save_pretrained(tmp / "clip", safe_serialization=True)
    pipe.tokenizer.save_pretrained(tmp / "clip")
    image_processor().save_pretrained(tmp / "clip")
    n_params = {
        name: sum(p.numel() for p in m.parameters())
        for name, m in (("unet", pipe.unet), ("vae", pipe.vae), ("text_encoder", pipe.text_encoder), ("clip", clip))
    }
    info = {
        "name": "segakit embedded model (mini SD on the faces world)",
        "dtype": dtypes,
        "load": "StableDiffusionPipeline.from_pretrained(path) (computes in float32); CLIPModel.from_pretrained(path / 'clip', dtype=torch.float32)",
        "image_size": 64,
        "latent_shape": [4, 16, 16],
        "scaling_factor": pipe.vae.config.scaling_factor,
        "parameters": n_params,
        "training": {
            "autoencoder": _training_json(parts.vae),
            "clip": _training_json(parts.clip),
            "tokenizer": _training_json(parts.tokenizer),
            "unet": _training_json(parts.unet),
        },
        "assembled": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    size = folder_mb(tmp)
    info["size_mb"] = round(size, 2)
    (tmp / "segakit.json").write_text(json.dumps(info, indent=1))
    if size > max_mb:
        shutil.rmtree(tmp)
        raise SystemExit(f"the assembled model is {size:.1f} MB, over the {max_mb} MB budget; shrink a component.")
    replace_dir(tmp, out)
    print(
        f"embedded model: {size:.1f} MB, unet {n_params['unet'] / 1e6:.2f}M, vae {n_params['vae'] / 1e6:.2f}M, "
        f"text encoder {n_params['text_encoder'] / 1e6:.2f}M, clip {n_params['clip'] / 1e6:.2f}M -> {out}",
        flush=True,
    )
    return out


def check(folder: Path, steps: int = 2) -> tuple[int, int]:
    """Load ``folder`` with stock diffusers and generate one image; returns its size."""
    pipe = StableDiffusionPipeline.from_pretrained(folder)
    image = pipe(
        "a smiling woman with glasses", num_inference_steps=steps, generator=torch.Generator().manual_seed(0)
    ).images[0]
    return image.size


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(AssembleConfig, argv)
    root = Path(cfg.runs) if cfg.runs else runs_root()
    out = assemble(Parts.under(root), Path(cfg.out) if cfg.out else DEFAULT_OUT, cfg.fp16, cfg.max_mb)
    if cfg.check:
        print(f"stock StableDiffusionPipeline loads it and generates a {check(out)} image", flush=True)


if __name__ == "__main__":
    main()
