"""SEGA edits on an inverted image with implicit masks: the LEDITS++ recipe (Brack et al. 2024).

From an edit-friendly DDPM inversion (:func:`segakit.core.inversion.ddpm_invert`), sample back with the stored
noises; at each step every concept adds ``scale * (eps_concept - eps_uncond)`` (negated for a removal), masked
where the edit belongs:

- attention mask (eq. 6): the concept prompt's cross-attention, averaged over heads and the U-Net's down/up layers
  at a quarter of the latent size, summed over its tokens, smoothed (Gaussian, 3 x 3, sigma 0.5), kept where it
  reaches its ``threshold`` quantile. Which tokens (:data:`MASK_TOKENS`): ``"all"``, every token after the start
  token, padding included, is what LEDITS++'s code computes (diffusers' ``LEditsPPPipelineStableDiffusion`` takes
  ``num_edit_tokens`` from the tokenizer's padded length) and the default here; ``"concept"``, the concept's own
  tokens, is the paper's wording. On the embedded model the shipped reading edits and the literal one barely
  does (docs/editing.md);
- noise mask (eq. 7): the guidance's absolute value summed over channels, kept where it reaches its quantile;
- the intersection of both (from timestep 800 down; above it, the attention mask alone).

``masks`` (:data:`SEGA_MASKS`) picks among the three regimes diffusers' pipeline offers: ``"intersect"`` (the above,
LEDITS++'s default, ``use_intersect_mask=True``), ``"attention"`` (the attention mask alone at every step,
``use_cross_attn_mask=True, use_intersect_mask=False``) and ``"noise"`` (the noise mask alone at every step, SEGA's
own quantile mask, both flags off; no attention is captured). On the embedded model, ``"noise"`` at a high quantile
with latent blending edits more and keeps more of the rest than the default (docs/editing.md, "SEGA's own masks").

The math here is LEDITS++'s own (its masks replace SEGA's quantile-only mask and momentum), written from the paper;
``segakit.sega`` is not imported (editing and sega are sibling layers).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from segakit.core.attention import CrossAttentionCapture
from segakit.core.conditioning import Conditioning
from segakit.core.inversion import EditFriendlyInversion, ddpm_scheduler, ddpm_step
from segakit.editing.blend import blend_step

INTERSECT_FROM_T = 800
MASK_TOKENS = ("all", "concept")  # which tokens' attention makes the mask (see the module docs)
SEGA_MASKS = ("intersect", "attention", "noise")  # which masks a concept's guidance goes through (see the module docs)


@dataclass
class ConceptEdit:
    """One concept to add (or, with ``reverse``, remove), LEDITS++'s defaults."""

    concept: str
    reverse: bool = False
    scale: float = 5.0
    threshold: float = 0.9
    warmup: int = 0

    @classmethod
    def parse(cls, spec: str, **kwargs) -> ConceptEdit:
        """``"+glasses"`` / ``"-beard"`` (no sign: add)."""
        spec = spec.strip()
        reverse = spec.startswith("-")
        return cls(spec.lstrip("+-").strip(), reverse, **kwargs)


def gaussian_smooth(maps: torch.Tensor, sigma: float = 0.5) -> torch.Tensor:
    """(N, H, W) smoothed with a normalised 3 x 3 Gaussian, reflect padding.

    The kernel is the one LEDITS++'s code evaluates for its "sigma 0.5": ``exp(-(d / (2 sigma))^2)``, which is a
    Gaussian of standard deviation ``sigma * sqrt(2)``; segakit uses the same numbers so that its masks are the
    reference's (tests/test_editing_ledits.py checks the edit against diffusers' pipeline).
    """
    ax = torch.tensor([-1.0, 0.0, 1.0], dtype=maps.dtype, device=maps.device)
    g = torch.exp(-((ax / (2 * sigma)) ** 2))
    kernel = (g[:, None] * g[None, :]) / (g.sum() ** 2)
    padded = F.pad(maps[:, None], (1, 1, 1, 1), mode="reflect")
    return F.conv2d(padded, kernel[None, None])[:, 0]


def quantile_mask(values: torch.Tensor, q: float) -> torch.Tensor:
    """1 where ``values`` (N, H, W) reach their per-row ``q`` quantile, else 0."""
    flat = values.flatten(1).float()
    return (values >= torch.quantile(flat, q, dim=1).to(values.dtype)[:, None, None]).to(values.dtype)


def attention_mask(
    token_maps: Sequence[torch.Tensor], tokens: int, side: int, q: float, latent_hw: tuple[int, int]
) -> torch.Tensor:
    """(N, 1, h, w) mask from ``token_maps`` (each (N, heads, side*side, seq)) of the concept's first ``tokens``
    tokens after the start token."""
    mean = torch.stack([m.mean(1) for m in token_maps]).mean(0)  # (N, side*side, seq)
    concept = mean[:, :, 1 : 1 + tokens].sum(-1).reshape(-1, side, side)
    mask = quantile_mask(gaussian_smooth(concept), q)
    return F.interpolate(mask[:, None], size=latent_hw, mode="nearest")


def noise_mask(guidance: torch.Tensor, q: float) -> torch.Tensor:
    """(N, 1, h, w): where the guidance's absolute value, summed over channels, reaches its ``q`` quantile."""
    return quantile_mask(guidance.abs().sum(1), q)[:, None]


def concept_mask(
    masks: str, guidance: torch.Tensor, token_maps: Sequence[torch.Tensor], tokens: int, q: float, t: int
) -> torch.Tensor:
    """(N, 1, h, w): the mask of one concept's ``guidance`` at timestep ``t`` under the regime ``masks``
    (:data:`SEGA_MASKS`); ``token_maps`` (each (N, heads, side*side, seq)) are unused for ``"noise"``."""
    if masks == "noise":
        return noise_mask(guidance, q)
    side = int(round(token_maps[0].shape[2] ** 0.5))
    mask = attention_mask(token_maps, tokens, side, q, guidance.shape[-2:])
    if masks == "intersect" and t <= INTERSECT_FROM_T:
        mask = mask * noise_mask(guidance, q)
    return mask


def mask_resolution(capture: CrossAttentionCapture, latent_side: int) -> int:
    """The down/up blocks' cross-attention grid nearest a quarter of the latent side (LEDITS++: 16 for SD's 64),
    larger on ties."""
    sides = sorted(
        {int(round(m.shape[1] ** 0.5)) for name, m in capture.maps.items() if not name.startswith("mid_block")},
        reverse=True,
    )
    return min(sides, key=lambda s: abs(s - latent_side / 4))


def concept_tokens(tokenizer, concept: str, mask_tokens: str = "all") -> int:
    """How many tokens after the start token the mask sums: ``"concept"``, those ``concept`` takes before the end
    token; ``"all"``, the padded sequence's less the start and end tokens (LEDITS++'s code)."""
    if mask_tokens == "all":
        return int(tokenizer.model_max_length) - 2
    if mask_tokens != "concept":
        raise ValueError(f"mask_tokens {mask_tokens!r} is not one of {', '.join(MASK_TOKENS)}.")
    return max(1, len(tokenizer(concept).input_ids) - 2)


@torch.no_grad()
def sega_on_inversion(
    unet, scheduler_config, inversion: EditFriendlyInversion, uncond: Conditioning, concepts: Conditioning,
    edits: Sequence[ConceptEdit], tokens: Sequence[int], skip: float, source: Conditioning | None = None,
    source_guidance: float = 1.0, blend: bool = False, callback: Callable[[int], None] | None = None,
    masks: str = "intersect", blend_dilate: int = 0,
) -> torch.Tensor:  # fmt: skip
    """Sample from ``inversion`` with the masked concept guidance of ``edits`` (rows of ``concepts``, in order).

    The base prediction is the one the inversion used (``uncond``, guided towards ``source`` by ``source_guidance``
    when given; at guidance 1, the source's own prediction, as :func:`segakit.core.inversion.guided` inverts), so
    with no concepts the image comes back exactly. (diffusers' LEditsPPPipelineStableDiffusion samples from the
    unconditional prediction alone.) ``blend`` (:mod:`segakit.editing.blend`): outside the union of the concepts'
    masks, each grown by ``blend_dilate`` latent pixels, hold the sample on the inversion's trajectory. ``masks``: one
    of :data:`SEGA_MASKS`.
    """
    if masks not in SEGA_MASKS:
        raise ValueError(f"masks {masks!r} is not one of {', '.join(SEGA_MASKS)}.")
    steps = len(inversion.timesteps)
    scheduler, timesteps = ddpm_scheduler(scheduler_config, steps, skip)
    guided = source is not None
    rows = Conditioning.cat([uncond, source, concepts] if guided else [uncond, concepts])
    first = 2 if guided else 1
    x, region = inversion.latents, None
    attend = masks != "noise"
    with CrossAttentionCapture(unet) if attend else contextlib.nullcontext() as capture:
        for i, t in enumerate(timesteps):
            if attend:
                capture.record(i)
            out = unet(x.expand(len(rows), -1, -1, -1), t, **rows.unet_kwargs()).sample
            eps_u, eps_c = out[:1], out[first:]
            base = eps_u + source_guidance * (out[1:2] - eps_u) if guided else eps_u
            if attend:
                maps = capture.token_maps(len(rows))
                side = mask_resolution(capture, x.shape[-1])
                at_side = [
                    m[first:]
                    for name, m in maps.items()
                    if m.shape[2] == side * side and not name.startswith("mid_block")
                ]
            guidance = torch.zeros_like(eps_u)
            edited = torch.zeros_like(eps_u[:, :1]) if blend else None  # the union of this step's masks
            for c, edit in enumerate(edits):
                if i < edit.warmup:
                    continue
                g = (eps_c[c : c + 1] - eps_u) * (-edit.scale if edit.reverse else edit.scale)
                mask = concept_mask(
                    masks, g, [m[c : c + 1] for m in at_side] if attend else [], tokens[c], edit.threshold, int(t)
                )
                guidance = guidance + g * mask
                if blend:
                    edited = torch.maximum(edited, mask)
            x = ddpm_step(scheduler, base + guidance, t, x, inversion.noises[i])
            if blend:
                x, region = blend_step(x, inversion, i, edited, region, blend_dilate)
            if callback is not None:
                callback(i)
    return x
