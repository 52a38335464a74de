"""The flow model's parts: a small ``SD3Transformer2DModel`` (MMDiT) over 16x16x4 latents, its sampler, and the
rectified-flow training pair.

Rectified flow (as ``FlowMatchEulerDiscreteScheduler`` samples it): ``x_s = (1 - s) x0 + s noise`` for a noise level
``s`` in (0, 1), timestep ``1000 s``, and the transformer predicts the velocity ``noise - x0``. The noise levels are
drawn logit-normal (SD3's choice: ``s = sigmoid(n)``, ``n ~ N(mean, std)``) or uniform, then moved by the same
``shift`` map the scheduler applies, ``shift s / (1 + (shift - 1) s)``.

:class:`segakit.core.families.counted_rows.CountedRowAttention` is the attention training runs with: the last text
row stands for ``multiplicity`` equal rows (SD3's zero T5 rows, see :mod:`segakit.train.flow_text`): its key gets
``log multiplicity`` added to its attention logit, which is exactly what that many equal keys and values do to a
softmax. ``SegaPipeline`` samples the shipped folder the same way (the stock pipeline computes every zero row).
"""

from __future__ import annotations

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel

from segakit.core.families.counted_rows import CountedRowAttention


def build_transformer(layers: int, heads: int, head_dim: int, text_dim: int, pooled_dim: int) -> SD3Transformer2DModel:
    """An MMDiT for the embedded autoencoder's 16x16x4 latents (patch 2: 64 image tokens)."""
    return SD3Transformer2DModel(
        sample_size=16,
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=layers,
        attention_head_dim=head_dim,
        num_attention_heads=heads,
        joint_attention_dim=text_dim,
        caption_projection_dim=heads * head_dim,
        pooled_projection_dim=pooled_dim,
        pos_embed_max_size=8,
    )


def build_scheduler(shift: float) -> FlowMatchEulerDiscreteScheduler:
    """The sampler that ships with the model (SD3's, with this resolution's ``shift``)."""
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)


def shifted(s: torch.Tensor, shift: float) -> torch.Tensor:
    """The scheduler's shift map of noise levels: ``shift s / (1 + (shift - 1) s)``."""
    return shift * s / (1 + (shift - 1) * s)


def noise_levels(
    n: int, kind: str, shift: float, generator: torch.Generator, mean: float = 0.0, std: float = 1.0
) -> torch.Tensor:
    """``n`` training noise levels in (0, 1): ``logit_normal`` or ``uniform``, then shifted."""
    if kind == "logit_normal":
        s = torch.sigmoid(mean + std * torch.randn(n, generator=generator))
    elif kind == "uniform":
        s = torch.rand(n, generator=generator)
    else:
        raise ValueError(f"timestep sampling must be logit_normal or uniform, got {kind!r}")
    return shifted(s, shift)


def flow_pair(x0: torch.Tensor, noise: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_s, velocity)``: the noisy latents at levels ``s`` (N,) and the target ``noise - x0``."""
    s = s.view(-1, 1, 1, 1)
    return (1 - s) * x0 + s * noise, noise - x0


def use_repeated_row(model: SD3Transformer2DModel, multiplicity: int) -> None:
    """Train / sample ``model`` on text rows whose last row stands for ``multiplicity`` equal rows."""
    model.set_attn_processor(CountedRowAttention(multiplicity))


def use_stock_attention(model: SD3Transformer2DModel) -> None:
    """Back to diffusers' own joint attention (what a saved folder loads with)."""
    from diffusers.models.attention_processor import JointAttnProcessor2_0

    model.set_attn_processor(JointAttnProcessor2_0())
