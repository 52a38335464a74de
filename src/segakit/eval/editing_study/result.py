"""What every method of the study gives back for one edit (:class:`MethodResult`), as uint8 pixels."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image


@dataclass
class MethodResult:
    image: np.ndarray  # (3, H, W) uint8
    seconds: float
    captions_before: list[str] = field(default_factory=list)
    captions_after: list[str] = field(default_factory=list)
    concepts: list[str] = field(default_factory=list)
    stages: dict[str, float] = field(
        default_factory=dict
    )  # OnTheFly and the flow methods: seconds of captions (the language model), inversion, edit


def to_u8(image: Image.Image | torch.Tensor) -> np.ndarray:
    """A PIL image or a (1, 3, H, W) tensor in [0, 1] -> (3, H, W) uint8."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1).copy()
    return (image[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
