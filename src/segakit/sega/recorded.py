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


def describe(recorded: RecordedGuidance) -> str:
    """How a guidance file was recorded, in words: images, steps, size, model, seed, edits."""
    steps, images = recorded.guidance.shape[:2]
    meta = recorded.metadata
    parts = [f"{images} image{'s' if images != 1 else ''} at {steps} steps"]
    if meta.get("width") and meta.get("height"):
        parts.append(f"{meta['width']}x{meta['height']}")
    parts.append(f"model {meta['model']!r}" if meta.get("model") else "an unnamed model")
    if "seed" in meta:
        parts.append(f"seed {meta['seed']}")
    edits = [("-" if e.get("reverse") else "+") + str(e.get("prompt")) for e in meta.get("edits", [])]
    if edits:
        parts.append("edits " + " ".join(edits))
    return ", ".join(parts)


def check_fits(recorded: RecordedGuidance, path: str | Path, steps: int, num_images: int, model: str | None = None,
               height: int | None = None, width: int | None = None) -> None:  # fmt: skip
    """Refuse recorded guidance that does not fit a call: other step count, image count, size or model."""
    have_steps, have_images = int(recorded.guidance.shape[0]), int(recorded.guidance.shape[1])
    meta = recorded.metadata
    misfits = []
    if have_steps != steps:
        misfits.append(f"{steps} steps (use --steps {have_steps})")
    if have_images != num_images:
        misfits.append(f"{num_images} image{'s' if num_images != 1 else ''} (use -n {have_images})")
    if height and width and meta.get("height") and meta.get("width") and (meta["height"], meta["width"]) != (height, width):
        misfits.append(f"{width}x{height} (use --width {meta['width']} --height {meta['height']})")
    if model is not None and meta.get("model") and str(meta["model"]) != str(model):
        misfits.append(f"model {str(model)!r} (use --model {meta['model']})")
    if misfits:
        raise UserError(f"Guidance file {str(path)!r} was recorded for {describe(recorded)}; this call asks for "
                        f"{' and '.join(misfits)}.")  # fmt: skip
