"""SD3's two CLIP slots, filled with the embedded model's one text encoder, and the prompt rows the transformer reads.

``StableDiffusion3Pipeline`` encodes a prompt with two ``CLIPTextModelWithProjection`` and (optionally) T5:

- per-token embeddings: ``hidden_states[-2]`` (the input of the last CLIP layer) of each CLIP, concatenated on the
  features, zero-padded to the transformer's ``joint_attention_dim``, then followed on the sequence by the T5 rows
  -- ``max_sequence_length`` (default 256) rows of zeros when the folder has no T5;
- pooled: each CLIP's ``text_embeds`` (its projection of the end-of-text token), concatenated.

The embedded text encoder is a 4-layer ``CLIPTextModel`` whose *last* hidden state (after the final LayerNorm) is what
the U-Net reads. :func:`sd3_text_encoder` turns it into a ``CLIPTextModelWithProjection`` that gives SD3's pipeline
the same information, exactly (segakit's construction):

- a 5th layer with every weight and bias zero: its attention and MLP add exactly zero to the residual stream, so
  ``hidden_states[-2]`` is the 4th layer's output (the last hidden state before the final LayerNorm) and the final
  LayerNorm still sees the 4th layer's output (``last_hidden_state`` and the pooled token are the original's);
- ``text_projection`` the identity (``projection_dim`` = hidden size), so ``text_embeds`` is the original's pooled
  output: the final-LayerNorm state of the first end-of-text token.

Both slots hold this same encoder (there is no second one to put there): the joint embedding is ``[h, h]``
(``joint_attention_dim`` = 2 x 256 = 512, no padding) and the pooled one ``[e, e]``. Why not the stock
``hidden_states[-2]`` of the 4-layer encoder (its 3rd layer)? ``benchmarks/flow_choices.py text`` measures it with the
text-encoder gate; see docs/training.md "The flow model".

The 256 zero T5 rows: every zero row enters the transformer as the same vector, and rows that start equal stay
equal through every joint block (no positional embedding on the text side; each row is changed only by its own
value and by attention, which gives equal queries equal outputs). In attention, ``n`` equal keys/values weigh
like one key whose logit is raised by ``log n``. Training therefore feeds ONE zero row with multiplicity 256
(:mod:`segakit.train.flow_model`'s attention processor), which is the stock pipeline's default computation at a
third of the cost; the tests check the equality.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import CLIPTextModelWithProjection, CLIPTokenizer

from segakit.core.embedded_flow import sd3_text_encoder  # noqa: F401  (re-exported: the recipe and tests use it here)

T5_ROWS = 256  # StableDiffusion3Pipeline's default max_sequence_length: the zero rows it appends without T5


@torch.no_grad()
def tokenize(tokenizer: CLIPTokenizer, prompts: Sequence[str]) -> torch.Tensor:
    """Token ids padded to the tokenizer's ``model_max_length``, as SD3's pipeline pads its CLIP inputs."""
    return tokenizer(
        list(prompts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids


@torch.no_grad()
def encode(
    slot: CLIPTextModelWithProjection,
    tokenizer: CLIPTokenizer,
    prompts: Sequence[str],
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(tokens (N, L, 2D), pooled (N, 2D))``: SD3's CLIP part for both slots holding ``slot`` (no T5 rows)."""
    out = slot(tokenize(tokenizer, prompts).to(device), output_hidden_states=True)
    hidden, pooled = out.hidden_states[-2].float(), out.text_embeds.float()
    return torch.cat([hidden, hidden], dim=-1), torch.cat([pooled, pooled], dim=-1)


def with_t5_rows(tokens: torch.Tensor, rows: int) -> torch.Tensor:
    """Append ``rows`` zero rows (SD3's T5 part when the folder has no T5) to the CLIP tokens (N, L, D)."""
    return torch.cat([tokens, tokens.new_zeros(tokens.shape[0], rows, tokens.shape[-1])], dim=1)
