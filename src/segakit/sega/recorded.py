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
            raise UserError(
                f"{str(path)!r} is not a segakit guidance file (safetensors with a 'guidance' tensor): {exc}"
            ) from None
        return cls(tensor, json.loads(meta.get("segakit", "{}")))


def guidance_steps(sem_guidance, steps: int) -> torch.Tensor | None:
    """The per-step guidance a call adds (``sem_guidance``: a :class:`RecordedGuidance`, a tensor or a list of
    per-step tensors; None: nothing), checked to cover ``steps`` steps."""
    if sem_guidance is None:
        return None
    if isinstance(sem_guidance, RecordedGuidance):
        reuse = sem_guidance.guidance
    elif isinstance(sem_guidance, (list, tuple)):
        reuse = torch.stack([torch.as_tensor(g) for g in sem_guidance])
    else:
        reuse = sem_guidance
    if reuse.shape[0] < steps:
        raise UserError(f"sem_guidance holds {reuse.shape[0]} steps; {steps} are needed.")
    return reuse


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


def first_image(recorded: RecordedGuidance, seed: int | None, num_images: int) -> int | None:
    """Which recorded image a call's first image uses: image i of a job has seed ``seed + i``, so a call for some of
    the recorded seeds (one PNG regenerated with --from-png) takes those; None when the call does not fit."""
    have = int(recorded.guidance.shape[1])
    start = recorded.metadata.get("seed")
    if seed is None or start is None:
        return 0 if have == num_images else None
    offset = seed - int(start)
    return offset if 0 <= offset and offset + num_images <= have else None


def check_fits(recorded: RecordedGuidance, path: str | Path, steps: int, num_images: int, model: str | None = None,
               height: int | None = None, width: int | None = None, seed: int | None = None) -> None:  # fmt: skip
    """Refuse recorded guidance that does not fit a call: other step count, image count (or seeds), size or model."""
    have_steps, have_images = int(recorded.guidance.shape[0]), int(recorded.guidance.shape[1])
    meta = recorded.metadata
    misfits = []
    if have_steps != steps:
        misfits.append(f"{steps} steps (use --steps {have_steps})")
    if first_image(recorded, seed, num_images) is None:
        seeds = f" with seed {seed}" if seed is not None and "seed" in meta else ""
        misfits.append(f"{num_images} image{'s' if num_images != 1 else ''}{seeds} (use -n {have_images}"
                       + (f" --seed {meta['seed']})" if seeds else ")"))  # fmt: skip
    if (
        meta.get("height")
        and meta.get("width")
        and ((height and height != meta["height"]) or (width and width != meta["width"]))
    ):
        misfits.append(
            f"{width or meta['width']}x{height or meta['height']} (use --width {meta['width']} --height {meta['height']})"
        )
    if model is not None and meta.get("model") and str(meta["model"]) != str(model):
        misfits.append(f"model {str(model)!r} (use --model {meta['model']})")
    if misfits:
        raise UserError(f"Guidance file {str(path)!r} was recorded for {describe(recorded)}; this call asks for "
                        f"{' and '.join(misfits)}.")  # fmt: skip
