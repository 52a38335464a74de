"""Cross-attention maps of a U-Net: capture them, keep them as a reference, or pull towards that reference.

:class:`CrossAttentionCapture` swaps the attention processor of every cross-attention layer (diffusers'
``Attention`` modules with ``is_cross_attention``; ``attn2`` of each transformer block in SD 1.x/2.x, SDXL and the
embedded model) for one that computes the softmax probabilities explicitly, so they can be read. Self-attention
layers keep their processors. The processors are restored on exit.

Modes (``capture.mode``):

- ``"off"``: the layers compute as diffusers does; nothing is kept.
- ``"record"``: every call's maps are kept in :attr:`CrossAttentionCapture.maps` (layer -> ``(batch*heads, queries,
  tokens)``), and, with ``reference=True``, also under the current :attr:`step` in :attr:`reference`.
- ``"match"``: each call adds pix2pix-zero's cross-attention loss ``sum_{q,k} (A - A_ref)^2`` (averaged over the
  batch*heads rows) of every layer to :attr:`loss`, against the maps recorded at the same step.

The probabilities are ``softmax(q k^T * scale)`` per head, exactly what ``attn.get_attention_scores`` gives, so a
captured layer's output equals the stock processor's up to floating-point order.
"""

from __future__ import annotations

from typing import Literal

import torch

Mode = Literal["off", "record", "match"]


def cross_attention_layers(unet) -> list[str]:
    """Names of the U-Net's cross-attention modules, in the U-Net's order."""
    return [
        name
        for name, module in unet.named_modules()
        if getattr(module, "is_cross_attention", False) and hasattr(module, "processor")
    ]


def attention_probs(attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None, attention_mask=None):
    """(probabilities ``(batch*heads, queries, tokens)``, values ``(batch*heads, tokens, head_dim)``) of one call."""
    batch = hidden_states.shape[0] if encoder_hidden_states is None else encoder_hidden_states.shape[0]
    tokens = hidden_states.shape[1] if encoder_hidden_states is None else encoder_hidden_states.shape[1]
    mask = attn.prepare_attention_mask(attention_mask, tokens, batch)
    query = attn.to_q(hidden_states)
    context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
    if encoder_hidden_states is not None and attn.norm_cross:
        context = attn.norm_encoder_hidden_states(context)
    key, value = attn.to_k(context), attn.to_v(context)
    query, key, value = (attn.head_to_batch_dim(x) for x in (query, key, value))
    return attn.get_attention_scores(query, key, mask), value


class _Processor:
    """One layer's processor: diffusers' plain attention with the probabilities handed to the capture."""

    def __init__(self, capture: CrossAttentionCapture, name: str) -> None:
        self.capture, self.name = capture, name

    def __call__(
        self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs
    ):
        residual = hidden_states
        if getattr(attn, "spatial_norm", None) is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        image_shape = None
        if hidden_states.ndim == 4:
            image_shape = hidden_states.shape
            b, c, h, w = image_shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        if getattr(attn, "group_norm", None) is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        probs, value = attention_probs(attn, hidden_states, encoder_hidden_states, attention_mask)
        self.capture._seen(self.name, probs)
        out = attn.batch_to_head_dim(torch.bmm(probs, value))
        out = attn.to_out[1](attn.to_out[0](out))
        if image_shape is not None:
            out = out.transpose(-1, -2).reshape(image_shape)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


class CrossAttentionCapture:
    """``with CrossAttentionCapture(unet) as cap: cap.mode = "record"; unet(...); cap.maps`` -- see the module docs."""

    def __init__(self, unet, store_device: torch.device | str | None = None) -> None:
        self.unet = unet
        self.layers = cross_attention_layers(unet)
        if not self.layers:
            raise ValueError("this U-Net has no cross-attention layers (no Attention module with is_cross_attention).")
        self.store_device = store_device
        self.mode: Mode = "off"
        self.step = 0
        self.keep_reference = False
        self.maps: dict[str, torch.Tensor] = {}
        self.reference: dict[tuple[int, str], torch.Tensor] = {}
        self.loss: torch.Tensor | None = None
        self._saved: dict | None = None

    def _seen(self, name: str, probs: torch.Tensor) -> None:
        if self.mode == "record":
            kept = probs.detach()
            self.maps[name] = kept
            if self.keep_reference:
                self.reference[(self.step, name)] = kept if self.store_device is None else kept.to(self.store_device)
        elif self.mode == "match":
            ref = self.reference.get((self.step, name))
            if ref is None:
                raise KeyError(f"no reference cross-attention map for layer {name!r} at step {self.step}.")
            term = ((probs - ref.to(probs.device, probs.dtype)) ** 2).sum(dim=(1, 2)).mean()
            self.loss = term if self.loss is None else self.loss + term

    def record(self, step: int, reference: bool = False) -> None:
        """The next U-Net calls keep their maps (``reference``: also as step ``step``'s reference)."""
        self.mode, self.step, self.keep_reference, self.maps = "record", step, reference, {}

    def match(self, step: int) -> None:
        """The next U-Net calls add their distance to step ``step``'s reference maps to :attr:`loss` (reset here)."""
        self.mode, self.step, self.loss = "match", step, None

    def off(self) -> None:
        self.mode = "off"

    def token_maps(self, rows: int, resolution: int | None = None) -> dict[str, torch.Tensor]:
        """The last recorded maps as ``(rows, heads, queries, tokens)`` per layer; ``resolution``: only layers whose
        queries form a ``resolution`` x ``resolution`` grid (LEDITS++ averages the 16 x 16 layers of SD)."""
        out = {}
        for name, probs in self.maps.items():
            q = probs.shape[1]
            if resolution is not None and q != resolution * resolution:
                continue
            out[name] = probs.reshape(rows, probs.shape[0] // rows, q, probs.shape[2])
        return out

    def __enter__(self) -> CrossAttentionCapture:
        self._saved = dict(self.unet.attn_processors)
        procs = dict(self._saved)
        for name in self.layers:
            procs[f"{name}.processor"] = _Processor(self, name)
        self.unet.set_attn_processor(procs)
        return self

    def __exit__(self, *exc) -> None:
        if self._saved is not None:
            self.unet.set_attn_processor(self._saved)
            self._saved = None
        self.mode, self.maps, self.loss = "off", {}, None
