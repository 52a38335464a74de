"""MagicBrush's image metrics and the faces world's exact ones, as small functions over image batches.

MagicBrush (Zhang et al. 2023) scores an edit against the target image and caption: L1 (mean absolute pixel
difference) and L2 (mean squared pixel difference, as its script's MSE loss), pixels in [0, 1]; CLIP-I, the
cosine of the CLIP image embeddings of the result and the target; CLIP-T, the cosine of the result's image
embedding and the target caption's text embedding. Here the CLIP is the embedded model's own (``clip/``: both
towers trained on the faces world), at the world's 64 x 64. The world adds what only an exact world gives: the
oracle's reading of the instructed attribute (success) and of every other attribute (unchanged share), and SSIM
to the source image.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from segakit.eval.ssim import ssim


def to_float(u8: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float in [0, 1]."""
    return torch.as_tensor(np.asarray(u8)).float() / 255.0


def l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference per image pair (N,), pixels in [0, 1]."""
    return (x.double() - y.double()).abs().flatten(1).mean(1)


def l2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared difference per image pair (N,), pixels in [0, 1] (MagicBrush's "L2")."""
    return (x.double() - y.double()).pow(2).flatten(1).mean(1)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity (N,)."""
    return F.cosine_similarity(a.double(), b.double(), dim=-1)


def ssim_to(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean SSIM per image pair (N,), pixels in [0, 1]."""
    return ssim(x, y, data_range=1.0)


def attribute_scores(source: dict, result: dict, changes: dict[str, object], unchanged: Sequence[str],
                     instructed: dict[str, tuple] | None = None) -> dict[str, float]:  # fmt: skip
    """Success: the oracle reads every instructed value (the pair's gold one) on the result; follows: it reads, for
    every changed attribute, one of the values that follow the instruction (``instructed``; default: the gold one;
    a relative skin instruction accepts every tone on its side); kept: the share of ``unchanged`` attributes it reads
    on the result as on the source."""
    success = all(result[a] == v for a, v in changes.items())
    follows = all(result[a] in (instructed or {}).get(a, (v,)) for a, v in changes.items())
    kept = sum(result[a] == source[a] for a in unchanged) / max(1, len(unchanged))
    return {"success": float(success), "follows": float(follows), "others_unchanged": float(kept)}


class ClipScorer:
    """CLIP-I and CLIP-T with a transformers ``CLIPModel`` folder (the embedded model's ``clip/``)."""

    def __init__(self, model, tokenizer) -> None:
        self.model, self.tokenizer = model.eval(), tokenizer

    @classmethod
    def from_folder(cls, folder: str | Path) -> ClipScorer:
        from transformers import CLIPModel, CLIPTokenizer

        model = CLIPModel.from_pretrained(folder, dtype=torch.float32, use_safetensors=True)
        return cls(model, CLIPTokenizer.from_pretrained(folder))

    @staticmethod
    def _features(out) -> torch.Tensor:
        return out if torch.is_tensor(out) else out.pooler_output  # transformers 4 | 5

    @torch.no_grad()
    def image_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, D), with the [-1, 1] pixels the CLIP was trained on."""
        return self._features(self.model.get_image_features(pixel_values=images.float() * 2 - 1)).float()

    @torch.no_grad()
    def text_embeddings(self, captions: Sequence[str]) -> torch.Tensor:
        ids = self.tokenizer(list(captions), padding="longest", truncation=True, return_tensors="pt").input_ids
        return self._features(self.model.get_text_features(input_ids=ids)).float()

    def clip_i(self, result: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cosine(self.image_embeddings(result), self.image_embeddings(target))

    def clip_t(self, result: torch.Tensor, captions: Sequence[str]) -> torch.Tensor:
        return cosine(self.image_embeddings(result), self.text_embeddings(captions))
