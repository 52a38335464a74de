"""A self-discovered concept direction: one h-space vector, its provenance, and its use at a strength.

A :class:`Direction` is a tensor of the U-Net mid-block output's shape (``(C, h, w)``: 128x4x4 for the embedded
model at 64 px, 1280x8x8 for SD 1.x at 512 px), the same at every timestep. ``direction.at(1.0)`` is what a
pipeline takes (``pipe(prompt, directions=[glasses.at(1.0)])``): ``h <- h + strength * c`` in the conditional
branch at every step. Saved as safetensors only: the tensor ``direction`` plus JSON metadata.

Applied at another latent size than it was learned at, the vector is resized spatially (bilinear), as the
h-space is spatial; a different channel count (another model family) is refused.

On a transformer (SD3, FLUX) the vector has the image-token output shape of one block, ``(tokens, width)``, and
the file records the block (``meta["site"]``, e.g. "transformer_blocks.2"); it is applied there and only at the
size it was learned at.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from segakit.core.atomic import atomic_open
from segakit.core.errors import UserError
from segakit.core.fingerprint import fingerprint

FORMAT = "segakit-direction-1"


@dataclass
class Direction:
    """``vector`` (C, h, w); ``name`` (the concept); ``meta``: model fingerprint, prompts, images, steps, loss."""

    vector: torch.Tensor
    name: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.vector.shape)  # type: ignore[return-value]

    def at(self, strength: float = 1.0) -> AppliedDirection:
        """This direction at ``strength`` (the paper's lambda), for ``pipe(..., directions=[...])``."""
        if not math.isfinite(strength):
            raise UserError(f"Direction strength {strength!r} is not a finite number.")
        return AppliedDirection(self, float(strength))

    @property
    def site(self) -> str:
        """Where the vector is added: "mid_block" (U-Nets) or "transformer_blocks.K" (SD3, FLUX)."""
        return self.meta.get("site", "mid_block")

    def resized(self, shape: tuple[int, ...]) -> torch.Tensor:
        """The vector at mid-block shape ``shape`` (C, h, w): resized spatially if h, w differ; refused if C does.
        On a transformer block (tokens, width) the shape must be the one learned."""
        if len(shape) != 3 or self.vector.ndim != 3:
            if tuple(shape) != self.shape:
                raise UserError(
                    f"Direction {self.name!r} has shape {self.shape} at {self.site}; this model needs {tuple(shape)} there. "
                    "A direction works only on the model and image size it was learned on; learn it again."
                )
            return self.vector
        c, h, w = (int(x) for x in shape)
        if self.shape[0] != c:
            raise UserError(
                f"Direction {self.name!r} has {self.shape[0]} channels; this model's mid-block has {c}. "
                "A direction works only on the model family it was learned on; learn it again for this model."
            )
        if self.shape[1:] == (h, w):
            return self.vector
        return F.interpolate(self.vector[None].float(), size=(h, w), mode="bilinear", align_corners=False)[0].to(
            self.vector.dtype
        )

    def check_model(self, denoiser) -> None:
        """Refuse (UserError) a direction learned on other denoiser weights (U-Net or transformer) than ``denoiser``'s."""
        want = self.meta.get("unet") or self.meta.get("denoiser")
        kind = "U-Net" if self.site == "mid_block" else "transformer"
        if want and want != fingerprint(denoiser):
            raise UserError(
                f"Direction {self.name!r} was learned on {kind} weights {want}; this model's are {fingerprint(denoiser)}. "
                "Learn it again on this model (segakit directions learn)."
            )

    # ---- files
    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save

        path = Path(path)
        if path.suffix != ".safetensors":
            raise UserError(f"Direction file {str(path)!r} must end in .safetensors.")
        meta = {"format": FORMAT, "name": self.name, "segakit": json.dumps(self.meta)}
        data = save({"direction": self.vector.detach().float().cpu().contiguous()}, metadata=meta)
        with atomic_open(path, "wb") as fh:
            fh.write(data)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Direction:
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise UserError(f"Direction file {str(path)!r} does not exist.")
        if path.suffix != ".safetensors":
            raise UserError(
                f"{str(path)!r} is not a .safetensors file; segakit loads directions from safetensors only."
            )
        try:
            with safe_open(str(path), framework="pt", device="cpu") as fh:
                meta = fh.metadata() or {}
                vector = fh.get_tensor("direction")
        except Exception as exc:  # not safetensors, or no "direction" tensor
            raise UserError(
                f"{str(path)!r} is not a segakit direction file (safetensors with a 'direction' tensor): {exc}"
            ) from None
        if meta.get("format") != FORMAT or vector.ndim not in (2, 3):
            raise UserError(
                f"{str(path)!r} is not a segakit direction file (format {meta.get('format')!r}, shape {tuple(vector.shape)})."
            )
        return cls(vector, meta.get("name", ""), json.loads(meta.get("segakit", "{}")))


@dataclass
class AppliedDirection:
    """A direction at a strength: an h-space offset (see :mod:`segakit.core.hooks`), the same for every image."""

    direction: Direction
    strength: float = 1.0

    @property
    def site(self) -> str:
        return self.direction.site

    def offset(self, batch: int, shape: tuple[int, ...], device, dtype) -> torch.Tensor:
        v = self.direction.resized(shape).to(device=device, dtype=dtype)
        return (self.strength * v).expand(batch, *v.shape).clone()


def parse_direction_spec(spec: str) -> tuple[Path, float]:
    """``FILE[:STRENGTH]`` (the CLI's ``--direction``) to a path and a strength (default 1)."""
    text = spec.strip()
    path, sep, strength = text.rpartition(":")
    if not sep or not path or "/" in strength or strength.endswith(".safetensors"):
        return Path(text), 1.0
    try:
        value = float(strength)
    except ValueError:
        raise UserError(
            f"--direction {spec!r}: the strength after ':' must be a number, such as file.safetensors:1.5."
        ) from None
    if not math.isfinite(value):
        raise UserError(f"--direction {spec!r}: the strength {strength!r} is not a finite number.")
    return Path(path), value
