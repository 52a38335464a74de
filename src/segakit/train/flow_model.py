"""The flow model's parts: a small ``SD3Transformer2DModel`` (MMDiT) over 16x16x4 latents, its sampler, and the
rectified-flow training pair.

Rectified flow (as ``FlowMatchEulerDiscreteScheduler`` samples it): ``x_s = (1 - s) x0 + s noise`` for a noise level
``s`` in (0, 1), timestep ``1000 s``, and the transformer predicts the velocity ``noise - x0``. The noise levels are
drawn logit-normal (SD3's choice: ``s = sigmoid(n)``, ``n ~ N(mean, std)``) or uniform, then moved by the same
``shift`` map the scheduler applies, ``shift s / (1 + (shift - 1) s)``.

:class:`RepeatedRowAttention` is segakit's attention processor for training: the last text row stands for
``multiplicity`` equal rows (SD3's zero T5 rows, see :mod:`segakit.train.flow_text`): its key gets ``log multiplicity``
added to its attention logit, which is exactly what that many equal keys and values do to a softmax.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel


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


class RepeatedRowAttention:
    """SD3's joint attention with the last text row counted ``multiplicity`` times (segakit's processor; the image
    rows come first in the key order, the text rows after them, as in diffusers' joint attention)."""

    def __init__(self, multiplicity: int) -> None:
        self.log_count = math.log(multiplicity)

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, n_image = hidden_states.shape[:2]

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(b, -1, attn.heads, x.shape[-1] // attn.heads).transpose(1, 2)

        q, k, v = heads(attn.to_q(hidden_states)), heads(attn.to_k(hidden_states)), heads(attn.to_v(hidden_states))
        cq, ck, cv = (
            heads(attn.add_q_proj(encoder_hidden_states)),
            heads(attn.add_k_proj(encoder_hidden_states)),
            heads(attn.add_v_proj(encoder_hidden_states)),
        )
        if attn.norm_q is not None:
            q, k = attn.norm_q(q), attn.norm_k(k)
        if attn.norm_added_q is not None:
            cq, ck = attn.norm_added_q(cq), attn.norm_added_k(ck)
        q, k, v = torch.cat([q, cq], 2), torch.cat([k, ck], 2), torch.cat([v, cv], 2)
        bias = torch.zeros(k.shape[2], dtype=q.dtype, device=q.device)
        bias[-1] = self.log_count
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.expand(q.shape[2], -1))
        out = out.transpose(1, 2).reshape(b, -1, q.shape[1] * q.shape[-1]).to(q.dtype)
        image, text = out[:, :n_image], out[:, n_image:]
        if not attn.context_pre_only:
            text = attn.to_add_out(text)
        return attn.to_out[1](attn.to_out[0](image)), text


def use_repeated_row(model: SD3Transformer2DModel, multiplicity: int) -> None:
    """Train / sample ``model`` on text rows whose last row stands for ``multiplicity`` equal rows."""
    model.set_attn_processor(RepeatedRowAttention(multiplicity))


def use_stock_attention(model: SD3Transformer2DModel) -> None:
    """Back to diffusers' own joint attention (what a saved folder loads with)."""
    from diffusers.models.attention_processor import JointAttnProcessor2_0

    model.set_attn_processor(JointAttnProcessor2_0())
