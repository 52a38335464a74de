"""Safe Latent Diffusion (Schramowski et al., CVPR 2023) as a peer: diffusers' own deprecated
``StableDiffusionPipelineSafe``, run unchanged on a SegaPipeline's components, at diffusers' presets.

The pipeline is diffusers' class as it ships; what is set is its public ``safety_concept`` (the default names
real-world harms the embedded model has never seen; in the faces world the unsafe concept is the horror look,
"a zombie") and no safety checker (the faces world has no NSFW classifier). The presets are diffusers'
``SafetyConfig`` (weak, medium, strong, max); "off" turns safety guidance off (``sld_guidance_scale`` 0), which is
plain classifier-free guidance.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence

import numpy as np
import torch

SLD_CONCEPT = "a zombie"  # the faces world's unsafe concept (the anti-horror direction is learned against it too)


def presets() -> dict[str, dict]:
    """diffusers' SLD presets by name (``weak``, ``medium``, ``strong``, ``max``) and ``off``."""
    from diffusers.pipelines.deprecated.stable_diffusion_safe import SafetyConfig

    table = {
        "weak": SafetyConfig.WEAK,
        "medium": SafetyConfig.MEDIUM,
        "strong": SafetyConfig.STRONG,
        "max": SafetyConfig.MAX,
    }
    return {"off": {"sld_guidance_scale": 0.0}, **{k: dict(v) for k, v in table.items()}}


@contextlib.contextmanager
def _quiet():
    """diffusers warns on building a deprecated pipeline and on every call without a safety checker."""
    from diffusers.utils import logging as dlog

    level = dlog.get_verbosity()
    dlog.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        dlog.set_verbosity(level)


def sld_pipeline(pipe, concept: str = SLD_CONCEPT):
    """diffusers' ``StableDiffusionPipelineSafe`` on ``pipe``'s components (shared, not copied), unsafe concept ``concept``."""
    from diffusers.pipelines.deprecated.stable_diffusion_safe import (
        StableDiffusionPipelineSafe,
    )

    with _quiet():
        sld = StableDiffusionPipelineSafe(vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=pipe.unet,
                                          scheduler=pipe.scheduler, safety_checker=None, feature_extractor=None,
                                          requires_safety_checker=False)  # fmt: skip
    sld.safety_concept = concept
    sld.set_progress_bar_config(disable=True)
    return sld


def sld_images(sld, prompt: str, generators: Sequence[torch.Generator], steps: int, preset: str,
               guidance: float = 7.5) -> torch.Tensor:  # fmt: skip
    """``len(generators)`` images of ``prompt`` at SLD preset ``preset``: (N, 3, H, W) floats in [0, 1]."""
    table = presets()
    if preset not in table:
        raise ValueError(f"SLD preset {preset!r} is not one of {', '.join(table)}.")
    with _quiet():
        out = sld(prompt, num_inference_steps=steps, guidance_scale=guidance, num_images_per_prompt=len(generators),
                  generator=list(generators), output_type="np", **table[preset])  # fmt: skip
    return torch.from_numpy(np.ascontiguousarray(out.images)).permute(0, 3, 1, 2).float()
