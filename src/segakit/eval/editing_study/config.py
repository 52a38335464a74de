"""The editing study's parameters (:class:`EditingStudyConfig`) and its methods' names."""

from __future__ import annotations

import math
from dataclasses import dataclass

from segakit.core.errors import UserError
from segakit.core.families import FAMILIES
from segakit.editing.blend import check_dilate
from segakit.editing.ledits import MASK_TOKENS, SEGA_MASKS
from segakit.world.schema import ATTRIBUTES

GOLD = (
    "onthefly-gold",
    "onthefly-gold-ddpm",
    "flowedit-gold",
    "rf-inversion-gold",
)  # the methods given the gold target caption
WRITTEN = (
    "onthefly-lm",
    "onthefly-lm-ddpm",
    "onthefly-auto-ddpm",
    "flowedit-lm",
    "rf-inversion-lm",
)  # the methods whose captions the caption writer writes
DDPM = (
    "onthefly-gold-ddpm",
    "onthefly-lm-ddpm",
    "onthefly-auto-ddpm",
)  # OnTheFly on a DDPM inversion (segakit edit --inversion ddpm)
CAPTIONED = ("onthefly-auto-ddpm",)  # the methods that caption the image themselves (not given the world's caption)

# name -> what it is (the report's row labels)
METHODS: dict[str, str] = {
    "onthefly-gold": "OnTheFly, gold target caption (what the paper's evaluation script measures)",
    "onthefly-lm": "OnTheFly, the caption writer's captions",
    "onthefly-gold-ddpm": "OnTheFly's edit direction on an edit-friendly DDPM inversion (segakit's variant), gold target caption",
    "onthefly-lm-ddpm": "OnTheFly's edit direction on an edit-friendly DDPM inversion (segakit's variant), the caption writer's captions",
    "onthefly-auto-ddpm": "OnTheFly on an edit-friendly DDPM inversion from the image and the instruction alone: the captioner's caption, then the caption writer's captions (the paper's whole chain)",
    "sega": "segakit SEGA on the edit-friendly inversion (LEDITS++ recipe), concepts from the instruction",
    "ledits-diffusers": "diffusers' LEditsPPPipelineStableDiffusion (peer), the same concepts",
    "regenerate": "inversion + regeneration with the source caption (no edit)",
    "flowedit-gold": "FlowEdit (inversion-free) from the gold source caption to the gold target caption, FlowEdit's defaults for the model: the paper's for its family, the embedded flow model's own (segakit edit --method flowedit)",
    "flowedit-lm": "FlowEdit along the caption writer's captions: the source caption moved by mean(after) - mean(before), the paper's settings",
    "rf-inversion-gold": "rectified-flow inversion under the source caption, sampled under the gold target caption (OnTheFly's idea on a flow; segakit edit --method invert)",
    "rf-inversion-lm": "rectified-flow inversion under the source caption, sampled along the caption writer's captions (segakit edit --method invert)",
    "sega-flow": "SEGA on the rectified-flow inversion, concepts from the instruction (LEDITS++'s idea on a flow; segakit edit --method sega)",
}
# the methods of each kind of model; regenerate runs on both (on a flow: the rectified-flow inversion, sampled back
# under the source caption at rf-inversion's settings, the reconstruction reference of rf-inversion and sega-flow)
UNET_METHODS = tuple(m for m in METHODS if not m.startswith(("flowedit", "rf-inversion", "sega-flow")))
FLOW_METHODS = ("flowedit-gold", "flowedit-lm", "rf-inversion-gold", "rf-inversion-lm", "sega-flow", "regenerate")
# what `segakit eval editing` runs when --methods is not given (on U-Nets the whole chain is left out: opt in)
DEFAULT_METHODS = {"unet": tuple(m for m in UNET_METHODS if m not in CAPTIONED), "flow": FLOW_METHODS}
UNET_STEPS = 25  # every U-Net method's inversion steps = edit steps when --steps is not given
# the U-Net methods' options: on a flow model a value other than the default is refused (no flow method uses it)
UNET_OPTIONS = {"guidance": "--guidance", "ddpm_guidance": "--ddpm-guidance", "ddpm_mask": "--ddpm-mask",
                "xa_guidance": "--xa-guidance", "skip": "--skip", "source_guidance": "--sega-source-guidance",
                "blend": "--blend", "mask_tokens": "--sega-mask-tokens", "sega_mask": "--sega-mask",
                "blend_dilate": "--blend-dilate"}  # fmt: skip


def kind_of(family: str | None) -> str | None:
    """ "flow" for the rectified-flow families (SD3, FLUX), "unet" for the U-Net ones, None when not known."""
    if family is None:
        return None
    adapter = FAMILIES.get(family)  # "unet" (model_index.json's word for sd / sdxl) is not an adapter's name
    return "flow" if adapter is not None and adapter.flow else "unet"


def default_methods(family: str | None) -> tuple[str, ...]:
    """The methods the study runs on a model of ``family`` when none are chosen (the U-Net's when not known)."""
    return DEFAULT_METHODS[kind_of(family) or "unet"]


@dataclass(frozen=True)
class EditingStudyConfig:
    """Every field enters the cache key of the edits it affects."""

    pairs: int = 24  # single-change world pairs (seed ``seed``, in index order)
    attributes: tuple[str, ...] = ()  # only the single-change pairs that change one of these (empty: all)
    sessions: int = 4  # multi-turn sessions (0 = skip the multi-turn protocol)
    turns: int = 3  # instructions per session (MagicBrush: up to 3)
    seed: int = 0  # the world pairs' and sessions' seed
    edit_seed: int = 0  # the methods' seed (noise regularisation, caption writer, DDPM inversion noise)
    # inversion steps = edit steps, every method; None: each method's own (U-Net methods 25; flow methods the flow
    # editors' defaults: FlowEdit the paper's per family, editing its last share; rf-inversion, sega-flow, regenerate 28)
    steps: int | None = None
    methods: tuple[str, ...] = UNET_METHODS
    guidance: float = 5.0  # OnTheFly's classifier-free guidance
    ddpm_guidance: float = 3.5  # OnTheFly's guidance on a DDPM inversion (segakit edit --inversion ddpm's default)
    ddpm_mask: float = 0.0  # OnTheFly on a DDPM inversion: the edit's noise-mask quantile (segakit edit --mask; 0: off)
    xa_guidance: float = 0.15  # OnTheFly's cross-attention guidance step
    captions: int = 3  # captions per side the caption writer writes
    sega_scale: float = 5.0  # SEGA / LEDITS++ edit guidance scale (LEDITS++'s default)
    sega_threshold: float = 0.9  # the masks' quantile (LEDITS++'s default)
    skip: float = 0.15  # share of the noisiest steps skipped by the edit-friendly inversion (LEDITS++'s default)
    source_guidance: float = 1.0  # segakit SEGA: guidance towards the source caption while inverting (1: none)
    blend: bool = False  # segakit SEGA and the masked -ddpm methods: latent blending (segakit.editing.blend)
    mask_tokens: str = "all"  # segakit SEGA: whose attention makes the masks (segakit.editing.ledits.MASK_TOKENS)
    sega_mask: str = "intersect"  # segakit SEGA and the peer: which masks (segakit.editing.ledits.SEGA_MASKS)
    blend_dilate: int = 0  # with blend: each step's mask grown by this many latent pixels (segakit edit --blend-dilate)
    figure_rows: int = 6

    def blends(self, method: str) -> bool:
        """Whether ``--blend`` applies to ``method``: segakit's SEGA, and the -ddpm methods when masked."""
        return self.blend and (method == "sega" or (method in DDPM and self.ddpm_mask > 0))

    def steps_for(self, method: str, family: str | None = None) -> int:
        """The steps ``method`` runs on a model of ``family``: ``steps`` when given, else the method's own (U-Net
        methods :data:`UNET_STEPS`; on SD3 and FLUX the flow editors' defaults, as ``segakit edit`` takes them)."""
        if self.steps is not None:
            return self.steps
        if kind_of(family) != "flow":
            return UNET_STEPS
        from segakit.editing.params import flow_defaults

        return int(flow_defaults("flowedit" if method.startswith("flowedit") else "invert", family)["steps"])

    def check(self, family: str | None = None) -> EditingStudyConfig:
        """Raise :class:`UserError` naming the first bad value; return self. With ``family`` ("unet", "sd", "sdxl",
        "sd3", "flux"), the methods and options must be that kind of model's."""
        for name, value, low in (("--pairs", self.pairs, 1), ("--sessions", self.sessions, 0), ("--turns", self.turns, 1),
                                 ("--steps", 1 if self.steps is None else self.steps, 1), ("--seed", self.seed, 0),
                                 ("--edit-seed", self.edit_seed, 0), ("--captions", self.captions, 1),
                                 ("--figure-rows", self.figure_rows, 0)):  # fmt: skip
            if int(value) != value or value < low:
                raise UserError(f"{name} {value!r} is not a whole number of {low} or more.")
        if self.turns > 6:
            raise UserError(f"--turns {self.turns} is above 6; MagicBrush's sessions have up to 3 turns.")
        if self.steps is not None and self.steps > 1000:
            raise UserError(f"--steps {self.steps} is outside 1..1000.")
        kind = kind_of(family)
        allowed = {"flow": FLOW_METHODS, "unet": UNET_METHODS}.get(kind or "", tuple(METHODS))
        if not self.methods:
            raise UserError(f"--methods is empty; choose from {', '.join(allowed)}.")
        for m in self.methods:
            if m not in METHODS:
                raise UserError(f"--methods has {m!r}, which is not one of {', '.join(allowed)}.")
            if m not in allowed:
                other = "U-Net models" if kind == "flow" else "SD3 and FLUX models"
                raise UserError(f"--methods has {m}, which edits {other}; on this {_model_words(family)} choose from "
                                f"{', '.join(allowed)}.")  # fmt: skip
        if kind == "flow":
            for name, option in UNET_OPTIONS.items():
                if getattr(self, name) != EditingStudyConfig.__dataclass_fields__[name].default:
                    raise UserError(f"{option} {getattr(self, name)!r} is an option of the U-Net methods; no method on "
                                    f"this {_model_words(family)} uses it.")  # fmt: skip
        for name, value in (("--guidance", self.guidance), ("--ddpm-guidance", self.ddpm_guidance), ("--sega-scale", self.sega_scale),
                            ("--sega-source-guidance", self.source_guidance)):  # fmt: skip
            if not math.isfinite(value) or value <= 0:
                raise UserError(f"{name} {value!r} is not a positive number.")
        if not math.isfinite(self.xa_guidance) or self.xa_guidance < 0:
            raise UserError(f"--xa-guidance {self.xa_guidance!r} is not 0 (off) or a positive number.")
        if self.mask_tokens not in MASK_TOKENS:
            raise UserError(f"--sega-mask-tokens {self.mask_tokens!r} is not one of {', '.join(MASK_TOKENS)}.")
        check_dilate(self.blend_dilate, self.blend)
        if self.sega_mask not in SEGA_MASKS:
            raise UserError(f"--sega-mask {self.sega_mask!r} is not one of {', '.join(SEGA_MASKS)}.")
        for a in self.attributes:
            if a not in ATTRIBUTES:
                raise UserError(f"--attributes has {a!r}, which is not one of {', '.join(ATTRIBUTES)}.")
        if not 0 <= self.ddpm_mask < 1:
            raise UserError(f"--ddpm-mask {self.ddpm_mask!r} is outside [0, 1).")
        if not 0 <= self.sega_threshold < 1 or not 0 <= self.skip < 1:
            raise UserError(f"--sega-threshold {self.sega_threshold!r} and --skip {self.skip!r} must lie in [0, 1).")
        return self


def _model_words(family: str | None) -> str:
    return "U-Net model" if kind_of(family) == "unet" else f"{str(family).upper()} model"
