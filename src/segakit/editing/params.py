"""``EditParams``: every choice behind one edit, as data (stored in the output PNG so that it can be repeated)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from segakit.core.errors import UserError, arg
from segakit.editing.blend import check_dilate
from segakit.editing.concepts import derive_concepts
from segakit.editing.ledits import MASK_TOKENS, SEGA_MASKS

METHODS = ("onthefly", "sega")
INVERSIONS = (
    "ddim",
    "ddpm",
)  # onthefly: the paper's DDIM inversion + cross-attention guidance, or segakit's DDPM variant
# the guidance of OnTheFly's edit pass: the paper's 5 on its DDIM inversion; 3.5 on a DDPM inversion, whose stored
# noises already pin the image (docs/editing.md: the sweep that chose it, and the masked setting that keeps more)
ONTHEFLY_GUIDANCE = {"ddim": 5.0, "ddpm": 3.5}


def default_guidance(method: str, inversion: str = "ddim") -> float:
    """The edit pass's guidance when none is given: OnTheFly's for its inversion; SEGA's concept scale (5)."""
    return ONTHEFLY_GUIDANCE.get(inversion, 5.0) if method == "onthefly" else 5.0


@dataclass
class EditParams:
    instruction: str
    model: str = "embedded"
    method: str = "onthefly"
    inversion: str = "ddim"  # onthefly: "ddim" (the paper's) or "ddpm" (edit-friendly; sega always uses it)
    source_caption: str | None = None
    captions_before: list[str] = field(default_factory=list)
    captions_after: list[str] = field(default_factory=list)
    num_captions: int = 3
    steps: int = 25  # inversion steps = edit steps (the paper: 100)
    guidance_scale: float = 5.0
    xa_guidance: float = 0.15
    direction_scale: float = 1.0
    regularize: bool = True
    seed: int = 0
    concepts: list[str] = field(default_factory=list)  # sega: "+glasses", "-beard"
    skip: float = 0.15  # sega and onthefly on a DDPM inversion: share of the schedule's first (noisiest) steps skipped
    source_guidance: float = 1.0  # sega: guidance towards the source caption while inverting and sampling (1: none)
    threshold: float = 0.9  # sega: the masks' quantile
    mask: float = 0.0  # onthefly on a DDPM inversion: edit only where the direction's change reaches this quantile (0: everywhere)
    blend: bool = False  # sega, onthefly on a DDPM inversion: outside the edit's masks, hold the inversion's latents (segakit.editing.blend)
    blend_dilate: int = (
        0  # with blend: grow each step's mask by this many latent pixels before it joins the held-free region
    )
    mask_tokens: str = "all"  # sega: whose attention makes the masks: "all" (LEDITS++'s code) or "concept" (its paper)
    sega_mask: str = (
        "intersect"  # sega: the masks: "intersect" (LEDITS++'s), "attention" alone, "noise" alone (SEGA's own)
    )
    image: str | None = None  # the source file, as given
    image_sha256: str | None = None

    def validate(self) -> EditParams:
        if not self.instruction or not self.instruction.strip():
            raise UserError("The instruction is empty; write what to change, e.g. 'give her glasses'.")
        if self.method not in METHODS:
            raise UserError(f"{arg('method')} {self.method!r} is not one of {', '.join(METHODS)}.")
        if self.inversion not in INVERSIONS:
            raise UserError(f"{arg('inversion')} {self.inversion!r} is not one of {', '.join(INVERSIONS)}.")
        if self.method == "sega":
            self.inversion = "ddpm"  # LEDITS++ always inverts edit-friendly; recorded as such
        if not 1 <= self.steps <= 1000:
            raise UserError(f"{arg('steps')} {self.steps} is outside 1..1000.")
        if not 1 <= self.num_captions <= 10:
            raise UserError(f"{arg('num_captions')} {self.num_captions} is outside 1..10.")
        if self.guidance_scale < 1:
            raise UserError(
                f"{arg('guidance_scale')} {self.guidance_scale} is below 1; classifier-free guidance scales start at 1."
            )
        if self.xa_guidance < 0:
            raise UserError(
                f"{arg('xa_guidance')} {self.xa_guidance} is negative; use 0 (off) or more (the paper: 0.15)."
            )
        if self.method == "sega" and not [c for c in self.concepts if c.strip("+- ")]:
            # no --concept: the concepts come from the instruction (and the source caption's old value), recorded here
            self.concepts = derive_concepts(
                self.instruction, self.source_caption or next(iter(self.captions_before), None)
            )
        if not 0 <= self.skip < 1:
            raise UserError(f"{arg('skip')} {self.skip} is outside [0, 1).")
        if not 0 <= self.threshold < 1:
            raise UserError(f"{arg('threshold')} {self.threshold} is outside [0, 1).")
        if not 0 <= self.mask < 1:
            raise UserError(
                f"{arg('mask')} {self.mask} is outside [0, 1); 0 edits everywhere, 0.5 the half of the image the edit moves most."
            )
        if self.mask and not (self.method == "onthefly" and self.inversion == "ddpm"):
            raise UserError(
                f"{arg('mask')} {self.mask} applies to {arg('method')} onthefly {arg('inversion')} ddpm only; sega masks with {arg('threshold')}."
            )
        if self.blend and not (self.method == "sega" or (self.inversion == "ddpm" and self.mask)):
            raise UserError(
                f"{arg('blend')} needs a masked edit: {arg('method')} sega, or {arg('inversion')} ddpm with {arg('mask')}."
            )
        check_dilate(self.blend_dilate, self.blend)
        if self.mask_tokens not in MASK_TOKENS:
            raise UserError(f"{arg('mask_tokens')} {self.mask_tokens!r} is not one of {', '.join(MASK_TOKENS)}.")
        if self.sega_mask not in SEGA_MASKS:
            raise UserError(f"{arg('sega_mask')} {self.sega_mask!r} is not one of {', '.join(SEGA_MASKS)}.")
        if self.sega_mask != "intersect" and self.method != "sega":
            raise UserError(
                f"{arg('sega_mask')} {self.sega_mask} applies to {arg('method')} sega only; onthefly masks with {arg('mask')}."
            )
        for name in ("captions_before", "captions_after"):
            if any(not c.strip() for c in getattr(self, name)):
                raise UserError(f"An empty caption was given in {arg(name)}; every caption needs words.")
        return self

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EditParams:
        if data.get("kind") != "edit":
            raise UserError(
                "This PNG was not written by segakit edit (its parameters are not an edit's); use segakit generate --from-png."
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known - {"kind", "segakit_version", "tries", "complete", "seconds", "turns", "warnings"}
        if unknown:
            raise UserError(
                f"The edit parameters in this PNG have unknown fields {sorted(unknown)}; a newer segakit wrote them."
            )
        return cls(**{k: v for k, v in data.items() if k in known})
