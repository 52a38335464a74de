"""Captions drawn afresh from a cached row's attribute labels, for the U-Net recipe's ``--fresh_captions``.

The latent cache keeps one caption per image, so without this an image is seen with the same words for the
whole run (and with the noun "glasses" mostly in "without glasses"). Here every step draws a new caption from
the world's caption generator for the row's labels. The cache stores the 12 attributes but not the nuisance
(hat colour, glasses frame, background), so the caption's random choices are steered to the forms that name
no nuisance value ("wearing a hat", not "wearing a red beanie"; no background): a caption never says
something false about the image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from transformers import CLIPTextModel, CLIPTokenizer

from segakit.world.captions import CaptionPlan, plan_caption, realize
from segakit.world.schema import ATTRIBUTES, Face


def face_of(labels: Mapping) -> Face:
    """A face with these attribute values (nuisance at its defaults: only the attributes are known)."""
    return Face(**{a: labels[a] for a in ATTRIBUTES})


def without_nuisance(plan: CaptionPlan) -> CaptionPlan:
    """The same plan, with the forms that would name a nuisance value replaced by generic ones. (The beard's
    "with a goatee" needs ``beard_style``, which stays at its default "full", so it never comes up.)"""
    u = {a: v.copy() for a, v in plan.u.items()}
    if "glasses" in u:
        u["glasses"][1] = 0.4 + 0.6 * u["glasses"][1]  # "with glasses", never "with round glasses" / "in red glasses"
    if "hat" in u:
        u["hat"][1] = 0.4 + 0.6 * u["hat"][1]  # "wearing a hat", never "wearing a red beanie"
        u["hat"][0] = 0.999  # the last word of every hat style's list is plain "hat"
    return CaptionPlan(plan.kind, list(plan.attrs), u, plan.template, plan.noun_u, background=False)


def fresh_caption(labels: Mapping, rng: np.random.Generator) -> str:
    """A new caption (empty, concept-only or full, at the world's rates) for a row with these labels."""
    face = face_of(labels)
    return realize(without_nuisance(plan_caption(face, rng)), face)


@torch.no_grad()
def encode(
    text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer, captions: Sequence[str], device: torch.device
) -> torch.Tensor:
    """Last hidden states (N, L, D), padded to ``model_max_length`` as the cache and StableDiffusionPipeline do."""
    ids = tokenizer(
        list(captions),
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    return text_encoder(ids.to(device))[0].float()
