"""Short hashes of model weights: a cache key or a file's provenance changes when a model is retrained."""

from __future__ import annotations

import hashlib
import json

import torch


def fingerprint(*modules, extra: object = None) -> str:
    """A hash of the modules' weights (and of ``extra``, JSON-able): it changes when a model is retrained."""
    h = hashlib.sha256()
    for m in modules:
        if m is None:
            continue
        for name, t in sorted(m.state_dict().items()):
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    if extra is not None:
        h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def pipeline_fingerprint(pipe) -> str:
    tok = getattr(pipe, "tokenizer", None)
    extra = {
        "scheduler": dict(pipe.scheduler.config),
        "vocab": sorted(tok.get_vocab().items()) if tok is not None else None,
    }
    denoiser = getattr(pipe, "unet", None) or pipe.transformer
    encoders = [getattr(pipe, n, None) for n in ("text_encoder_2", "text_encoder_3")]
    return fingerprint(denoiser, pipe.vae, pipe.text_encoder, *encoders, extra=extra)
