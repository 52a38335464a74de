"""The peer: diffusers' own ``LEditsPPPipelineStableDiffusion`` on the embedded model's components.

Run as diffusers ships it (0.42), with one workaround and one choice, both forced by two known bugs:

- **Workaround:** its ``invert`` hands ``DDIMScheduler.add_noise`` float timesteps (``torch.Tensor([t])``), which
  this torch refuses as an index (IndexError). The scheduler given to the pipeline is a ``DDIMScheduler`` subclass
  whose ``add_noise`` casts the timesteps to integers before calling diffusers' own; nothing else is changed (the
  same subclass as tests/test_inversion.py's parity check).
- **Choice:** with a source prompt its ``invert`` unpacks ``encode_prompt``'s (text, unconditional) embeddings in
  the wrong order and guides the inversion away from the caption. The peer therefore inverts with
  ``source_prompt=""`` (its default), where the bug cannot act; segakit's SEGA inverts towards the source caption.

Concepts are the same as segakit's SEGA gets (``+brown hair`` -> ``editing_prompt="brown hair"``, ``-x`` ->
``reverse_editing_direction=True``), at the same scale, threshold, skip and step count.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers import DDIMScheduler, LEditsPPPipelineStableDiffusion


class IntegerTimestepsDDIM(DDIMScheduler):
    """diffusers' DDIMScheduler, with the timesteps handed to ``add_noise`` cast to integers (see the module docs)."""

    def add_noise(self, original_samples, noise, timesteps):
        return super().add_noise(original_samples, noise, timesteps.long())


def ledits_peer(vae, text_encoder, tokenizer, unet, scheduler_config) -> LEditsPPPipelineStableDiffusion:
    pipe = LEditsPPPipelineStableDiffusion(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=IntegerTimestepsDDIM.from_config(scheduler_config), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


def ledits_edit(pipe: LEditsPPPipelineStableDiffusion, image, concepts: Sequence[str], steps: int, skip: float,
                scale: float, threshold: float, seed: int, size: int, masks: str = "intersect") -> torch.Tensor:  # fmt: skip
    """One edit: invert ``image`` (PIL), apply the concepts; the result as (1, 3, H, W) in [0, 1]. ``masks``: the
    pipeline's flags for segakit's ``"intersect"`` (its defaults), ``"attention"`` and ``"noise"`` (both off)."""
    prompts = [c.lstrip("+-").strip() for c in concepts]
    reverse = [c.strip().startswith("-") for c in concepts]
    pipe.invert(image=image, source_prompt="", num_inversion_steps=steps, skip=skip,
                generator=torch.Generator().manual_seed(seed), height=size, width=size)  # fmt: skip
    out = pipe(editing_prompt=prompts, reverse_editing_direction=reverse, edit_guidance_scale=[scale] * len(prompts),
               edit_threshold=[threshold] * len(prompts), generator=torch.Generator().manual_seed(seed), output_type="pt",
               use_cross_attn_mask=masks == "attention", use_intersect_mask=masks == "intersect")  # fmt: skip
    return out.images.float().cpu().clamp(0, 1)
