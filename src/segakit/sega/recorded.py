"""Recorded guidance: the semantic guidance of a run, saved once and re-applied to other prompts (same seed)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from segakit.core.atomic import atomic_open
from segakit.core.errors import UserError


@dataclass
class RecordedGuidance:
    """The semantic guidance applied at each step, shape (steps, images, C, h, w).

    Re-apply it with ``pipe(prompt, ..., sem_guidance=recorded)`` (same seed and steps) to reproduce
    the edit on this or another prompt without any edit branch in the U-Net batch.
    """

    guidance: torch.Tensor
    metadata: dict = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save

        meta = {"segakit": json.dumps(self.metadata)}
        data = save({"guidance": self.guidance.detach().cpu().contiguous()}, metadata=meta)
        with atomic_open(path, "wb") as fh:
            fh.write(data)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> RecordedGuidance:
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise UserError(f"Guidance file {str(path)!r} does not exist.")
        try:
            with safe_open(str(path), framework="pt", device=str(device)) as fh:
                meta = fh.metadata() or {}
                tensor = fh.get_tensor("guidance")
        except Exception as exc:  # not a safetensors file, or no "guidance" tensor
            raise UserError(f"{str(path)!r} is not a segakit guidance file (safetensors with a 'guidance' tensor): {exc}") from None
        return cls(tensor, json.loads(meta.get("segakit", "{}")))
