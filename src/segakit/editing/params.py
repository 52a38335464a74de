"""``EditParams``: every choice behind one edit, as data (stored in the output PNG so that it can be repeated)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from segakit.core.errors import UserError, arg
from segakit.editing.blend import check_dilate
from segakit.editing.concepts import derive_concepts
from segakit.editing.ledits import MASK_TOKENS, SEGA_MASKS

UNET_METHODS = ("onthefly", "sega")  # U-Net models: Pix2Pix-OnTheFly, LEDITS++
# SD3 / FLUX: FlowEdit (no inversion), OnTheFly's captions on a rectified-flow inversion, SEGA on that inversion
FLOW_METHODS = ("flowedit", "invert", "sega")
METHODS = ("onthefly", "sega", "flowedit", "invert")
FLOW_FAMILIES = ("sd3", "flux")
INVERSIONS = (
    "ddim",
    "ddpm",
)  # onthefly: the paper's DDIM inversion + cross-attention guidance, or segakit's DDPM variant
# what a flow edit records as its inversion: the rectified-flow inversion (invert, sega), or none (flowedit)
FLOW_INVERSIONS = {"flowedit": "none", "invert": "rf", "sega": "rf"}
# the guidance of OnTheFly's edit pass: the paper's 5 on its DDIM inversion; 3.5 on a DDPM inversion, whose stored
# noises already pin the image (docs/editing.md: the sweep that chose it, and the masked setting that keeps more)
ONTHEFLY_GUIDANCE = {"ddim": 5.0, "ddpm": 3.5}
FLOW_STEPS = 28  # invert and sega on flows: FlowEditor's default (FLUX.1's usual schedule)
# U-Net-only options and their "not used" values: on an SD3 or FLUX model any other value is refused (``mask`` is
# shared: OnTheFly's on a DDPM inversion, FlowEdit's on flows)
UNET_ONLY = {"blend": False, "blend_dilate": 0, "xa_guidance": 0.15, "regularize": True,
             "mask_tokens": "all", "sega_mask": "intersect"}  # fmt: skip
# flow-only options (RF-Inversion's controllers, the edit's size) and their "off" values
FLOW_ONLY = {"eta": 0.0, "eta_stop": None, "gamma": 0.0, "size": None}


def default_guidance(method: str, inversion: str | None = "ddim") -> float:
    """The edit pass's guidance when none is given: OnTheFly's for its inversion; SEGA's concept scale (5)."""
    return ONTHEFLY_GUIDANCE.get(inversion or "ddim", 5.0) if method == "onthefly" else 5.0


def flow_defaults(method: str, family: str, model: str | None = None) -> dict[str, float | int]:
    """The settings a flow edit takes where none is given, as :class:`EditParams` fields: FlowEdit's for the family
    and model (:func:`segakit.editing.flow.flowedit_defaults`: the paper's, or the embedded flow model's own;
    ``skip`` = 1 - its strength, to 6 digits; ``source_guidance`` / ``guidance_scale`` its source / target guidance;
    ``mask`` its noise mask's quantile, 0 for none);
    RF inversion and SEGA on it: :data:`FLOW_STEPS` steps, the plain ODE (guidance 1), SEGA's scale 5."""
    from segakit.editing.flow import flowedit_defaults

    if method == "flowedit":
        d = flowedit_defaults(family, model)
        return {"steps": d["steps"], "skip": round(1 - d["strength"], 6), "guidance_scale": d["target_guidance"],
                "source_guidance": d["source_guidance"], "mask": d["mask"]}  # fmt: skip
    return {
        "steps": FLOW_STEPS,
        "skip": 0.0,
        "guidance_scale": 5.0 if method == "sega" else 1.0,
        "source_guidance": 1.0,
        "mask": 0.0,
    }


def is_flow(family: str | None) -> bool:
    return family in FLOW_FAMILIES


@dataclass
class EditParams:
    instruction: str
    model: str = "embedded"
    method: str = "onthefly"  # U-Net: onthefly, sega; SD3 / FLUX: flowedit, invert, sega
    # onthefly: "ddim" (the paper's) or "ddpm" (edit-friendly; sega always uses it); None: "ddim". Flows record
    # "rf" (the rectified-flow inversion of invert and sega) or "none" (flowedit)
    inversion: str | None = None
    source_caption: str | None = None
    captions_before: list[str] = field(default_factory=list)
    captions_after: list[str] = field(default_factory=list)
    num_captions: int = 3
    steps: int | None = 25  # inversion steps = edit steps (the paper: 100); None: the method's and model's default
    # onthefly: the edit pass's guidance; sega: each concept's scale; flowedit: the target side's guidance; invert:
    # the guidance of inversion and sampling. None: the method's default (5 on U-Nets; flows: flow_defaults)
    guidance_scale: float | None = 5.0
    xa_guidance: float = 0.15
    direction_scale: float = 1.0
    regularize: bool = True
    seed: int = 0
    concepts: list[str] = field(default_factory=list)  # sega: "+glasses", "-beard"
    # share of the schedule's first (noisiest) steps skipped: sega and onthefly on a DDPM inversion (None: 0.15,
    # LEDITS++'s), flowedit (None: the paper's, 1 - its strength); invert and sega on flows run every step (0)
    skip: float | None = None
    # sega: guidance towards the source caption while inverting and sampling (1: none); flowedit: the source side's
    # guidance (None: the paper's); None elsewhere: 1
    source_guidance: float | None = None
    threshold: float = 0.9  # sega: the masks' quantile
    # onthefly on a DDPM inversion: edit only where the direction's change reaches this quantile (0: everywhere);
    # flowedit: LEDITS++'s noise mask on each step at this quantile. None: the method's and model's default (0 on
    # U-Nets, whose recipe sets it; flowedit: flow_defaults, the embedded flow model's measured mask, else none)
    mask: float | None = None
    blend: bool = False  # sega, onthefly on a DDPM inversion: outside the edit's masks, hold the inversion's latents (segakit.editing.blend)
    blend_dilate: int = (
        0  # with blend: grow each step's mask by this many latent pixels before it joins the held-free region
    )
    mask_tokens: str = "all"  # sega: whose attention makes the masks: "all" (LEDITS++'s code) or "concept" (its paper)
    sega_mask: str = (
        "intersect"  # sega: the masks: "intersect" (LEDITS++'s), "attention" alone, "noise" alone (SEGA's own)
    )
    eta: float = (
        0.0  # invert on flows: RF-Inversion's pull back towards the image while sampling (0: off, 1: the image)
    )
    eta_stop: int | None = None  # invert: eta acts on the steps before this one (None: every step)
    gamma: float = 0.0  # invert and sega on flows: RF-Inversion's pull towards a Gaussian while inverting (0: off)
    size: int | None = None  # flows: the side (pixels) the image is edited at (None: the model's default size)
    image: str | None = None  # the source file, as given
    image_sha256: str | None = None

    def validate(self, family: str | None = None) -> EditParams:
        """Check every field and fill the ones left None with the method's defaults on ``family`` ("sd", "sdxl",
        "sd3", "flux"; None: a U-Net model unless the method is a flow's only). Returns ``self``."""
        flow = is_flow(family) if family is not None else self.method in ("flowedit", "invert")
        if not self.instruction or not self.instruction.strip():
            raise UserError("The instruction is empty; write what to change, e.g. 'give her glasses'.")
        if self.method not in METHODS:
            raise UserError(f"{arg('method')} {self.method!r} is not one of {', '.join(METHODS)}.")
        if flow and self.method not in FLOW_METHODS:
            raise UserError(
                f"{arg('method')} {self.method} edits U-Net models; on this SD3 or FLUX model use one of {', '.join(FLOW_METHODS)}."
            )
        if not flow and self.method not in UNET_METHODS:
            raise UserError(
                f"{arg('method')} {self.method} edits SD3 and FLUX models; on this U-Net model use one of {', '.join(UNET_METHODS)}."
            )
        if self.skip is not None and not 0 <= self.skip < 1:
            raise UserError(f"{arg('skip')} {self.skip} is outside [0, 1).")
        self._check_flow(family) if flow else self._check_unet()
        if self.steps is not None and not 1 <= self.steps <= 1000:
            raise UserError(f"{arg('steps')} {self.steps} is outside 1..1000.")
        if not 1 <= self.num_captions <= 10:
            raise UserError(f"{arg('num_captions')} {self.num_captions} is outside 1..10.")
        if self.guidance_scale is not None and not self.guidance_scale >= 1:
            raise UserError(
                f"{arg('guidance_scale')} {self.guidance_scale} is below 1; classifier-free guidance scales start at 1."
            )
        if self.method == "sega" and not [c for c in self.concepts if c.strip("+- ")]:
            # no --concept: the concepts come from the instruction (and the source caption's old value), recorded here
            self.concepts = derive_concepts(
                self.instruction, self.source_caption or next(iter(self.captions_before), None)
            )
        if not 0 <= self.threshold < 1:
            raise UserError(f"{arg('threshold')} {self.threshold} is outside [0, 1).")
        for name in ("captions_before", "captions_after"):
            if any(not c.strip() for c in getattr(self, name)):
                raise UserError(f"An empty caption was given in {arg(name)}; every caption needs words.")
        return self

    def _check_unet(self) -> None:
        """The U-Net methods' checks (OnTheFly, LEDITS++), and their defaults where a field is None."""
        for name, off in FLOW_ONLY.items():
            if getattr(self, name) != off:
                raise UserError(
                    f"{arg(name)} {getattr(self, name)} applies to SD3 and FLUX models; this U-Net model does not use it (it edits at its own size)."
                    if name == "size"
                    else f"{arg(name)} {getattr(self, name)} is RF-Inversion's, for {arg('method')} invert on SD3 and FLUX models; this U-Net model does not use it."
                )
        self.inversion = self.inversion or "ddim"
        if self.inversion not in INVERSIONS:
            raise UserError(f"{arg('inversion')} {self.inversion!r} is not one of {', '.join(INVERSIONS)}.")
        if self.method == "sega":
            self.inversion = "ddpm"  # LEDITS++ always inverts edit-friendly; recorded as such
        self.steps = 25 if self.steps is None else self.steps
        self.skip = 0.15 if self.skip is None else self.skip
        self.guidance_scale = 5.0 if self.guidance_scale is None else self.guidance_scale
        self.source_guidance = 1.0 if self.source_guidance is None else self.source_guidance
        self.mask = 0.0 if self.mask is None else self.mask
        if self.xa_guidance < 0:
            raise UserError(
                f"{arg('xa_guidance')} {self.xa_guidance} is negative; use 0 (off) or more (the paper: 0.15)."
            )
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

    def _check_flow(self, family: str | None) -> None:
        """The flow methods' checks (FlowEdit, RF inversion, SEGA on it): what only a U-Net uses is refused; the
        fields left None take :func:`flow_defaults` when the family is known."""
        method = self.method
        for name, off in UNET_ONLY.items():
            if getattr(self, name) != off:
                raise UserError(
                    f"{arg(name)} {getattr(self, name)} applies to U-Net models; this SD3 or FLUX model edits with {arg('method')} {method} without it."
                )
        if self.inversion not in (None, FLOW_INVERSIONS[method]):
            raise UserError(
                f"{arg('inversion')} {self.inversion} applies to U-Net models; on SD3 and FLUX, flowedit does not invert and invert and sega use the rectified-flow inversion."
            )
        self.inversion = FLOW_INVERSIONS[method]
        if self.mask and method != "flowedit":
            raise UserError(
                f"{arg('mask')} {self.mask} applies to {arg('method')} flowedit on SD3 and FLUX models; {method} does not mask its steps."
            )
        if is_flow(family):
            for name, value in flow_defaults(method, family, self.model).items():  # type: ignore[arg-type]
                if getattr(self, name) is None:
                    setattr(self, name, value)
        self.mask = 0.0 if self.mask is None else self.mask  # family unknown: no mask
        if not 0 <= self.mask < 1:
            raise UserError(
                f"{arg('mask')} {self.mask} is outside [0, 1); 0 edits everywhere, 0.5 the half of the image the edit moves most."
            )
        if method != "flowedit" and self.skip:
            raise UserError(
                f"{arg('skip')} {self.skip} applies to {arg('method')} flowedit on SD3 and FLUX models; {method} runs the whole schedule."
            )
        if method == "invert" and self.source_guidance not in (None, 1.0):
            raise UserError(
                f"{arg('source_guidance')} {self.source_guidance} applies to {arg('method')} flowedit and sega; invert inverts and samples at {arg('guidance_scale')}."
            )
        if method != "invert" and (self.eta or self.eta_stop is not None):
            name = "eta" if self.eta else "eta_stop"
            raise UserError(
                f"{arg(name)} {getattr(self, name)} is RF-Inversion's pull towards the image, for {arg('method')} invert only."
            )
        if method == "flowedit" and self.gamma:
            raise UserError(
                f"{arg('gamma')} {self.gamma} shapes an inversion ({arg('method')} invert or sega); flowedit does not invert."
            )
        if method != "sega" and self.concepts:
            raise UserError(
                f"{arg('concepts')} {self.concepts} apply to {arg('method')} sega; {method} edits along the captions before and after."
            )
        if method == "sega" and self.direction_scale != 1.0:
            raise UserError(
                f"{arg('direction_scale')} {self.direction_scale} scales the captions' edit direction; sega edits with {arg('concepts')} (their scale: {arg('guidance_scale')})."
            )
        if method != "sega" and self.threshold != 0.9:
            raise UserError(
                f"{arg('threshold')} {self.threshold} is the quantile of sega's concepts; {method} has none."
            )
        if self.size is not None and not 1 <= self.size <= 4096:
            raise UserError(f"{arg('size')} {self.size} is outside 1..4096 pixels.")
        for name in ("eta", "gamma"):
            if not 0 <= getattr(self, name) <= 1:
                raise UserError(f"{arg(name)} {getattr(self, name)} is outside [0, 1]; 0 turns it off.")
        if self.eta_stop is not None and self.steps is not None and not 0 <= self.eta_stop <= self.steps:
            raise UserError(f"{arg('eta_stop')} {self.eta_stop} is outside 0..{self.steps} (the steps).")
        if method == "flowedit" and self.steps is not None and self.skip is not None:
            if round((1 - self.skip) * self.steps) < 1:
                raise UserError(
                    f"{arg('skip')} {self.skip} leaves none of the {self.steps} {arg('steps')} to edit; lower it or add steps."
                )

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for name, off in FLOW_ONLY.items():  # the flow-only fields: absent when off, as before they existed
            if data[name] == off:
                del data[name]
        return data

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
