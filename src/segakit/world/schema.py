"""The attribute schema of the faces world: names, values, priors, and the :class:`Face` record.

The attribute and value names here are the public vocabulary (label files, oracle JSON, CLI).
Binary attributes use ``(False, True)`` and appear in JSON as booleans.

Priors: ``presentation`` is drawn first; ``hair_style``, ``beard``, ``makeup`` and ``role`` are then drawn
from :data:`CONDITIONAL_PRIORS` given the presentation (the role bias is deliberate: most doctors and
firefighters are drawn as men, most nurses as women). ``bangs`` is drawn only when the hair is not bald.
:data:`PRIORS` holds the resulting marginal distribution of every attribute.
"""

from __future__ import annotations

import colorsys
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from segakit.core.errors import UserError, closest

RGB = tuple[int, int, int]

ATTRIBUTES: dict[str, tuple] = {
    "presentation": ("man", "woman"),
    "skin": ("light", "medium-light", "medium", "medium-dark", "dark"),
    "hair_style": ("short", "long", "curly", "bald"),
    "hair_color": ("black", "brown", "blond", "red", "gray"),
    "bangs": (False, True),
    "glasses": (False, True),
    "expression": ("smile", "neutral", "frown"),
    "beard": (False, True),
    "hat": (False, True),
    "makeup": (False, True),
    "role": ("none", "doctor", "nurse", "chef", "firefighter"),
    "horror": (False, True),
}
BINARY: tuple[str, ...] = tuple(a for a, v in ATTRIBUTES.items() if v == (False, True))

# Attributes whose prior depends on the presentation: {attribute: {presentation: {value: p}}}.
CONDITIONAL_PRIORS: dict[str, dict[str, dict]] = {
    "hair_style": {
        "man": {"short": 0.50, "long": 0.12, "curly": 0.20, "bald": 0.18},
        "woman": {"short": 0.15, "long": 0.55, "curly": 0.27, "bald": 0.03},
    },
    "beard": {"man": {False: 0.65, True: 0.35}, "woman": {False: 0.97, True: 0.03}},
    "makeup": {"man": {False: 0.92, True: 0.08}, "woman": {False: 0.50, True: 0.50}},
    # Biased by design: P(man | doctor) = 0.75, P(woman | nurse) = 0.90, P(man | firefighter) ~ 0.77,
    # chefs are balanced (a control). Half of everyone has no role.
    "role": {
        "man": {"none": 0.50, "doctor": 0.18, "nurse": 0.03, "chef": 0.12, "firefighter": 0.17},
        "woman": {"none": 0.50, "doctor": 0.06, "nurse": 0.27, "chef": 0.12, "firefighter": 0.05},
    },
}

# Independent priors (bangs is conditional on hair_style != bald: P(bangs | bald) = 0).
_INDEPENDENT: dict[str, dict] = {
    "presentation": {"man": 0.5, "woman": 0.5},
    "skin": {"light": 0.2, "medium-light": 0.2, "medium": 0.2, "medium-dark": 0.2, "dark": 0.2},
    "hair_color": {"black": 0.30, "brown": 0.28, "blond": 0.17, "red": 0.10, "gray": 0.15},
    "glasses": {False: 0.70, True: 0.30},
    "expression": {"smile": 0.40, "neutral": 0.35, "frown": 0.25},
    "hat": {False: 0.72, True: 0.28},
    "horror": {False: 0.85, True: 0.15},
}
BANGS_IF_HAIR = 0.35  # P(bangs | hair_style != bald)


def _marginals() -> dict[str, dict]:
    pres = _INDEPENDENT["presentation"]
    out: dict[str, dict] = {}
    for attr, values in ATTRIBUTES.items():
        if attr in _INDEPENDENT:
            out[attr] = dict(_INDEPENDENT[attr])
        elif attr in CONDITIONAL_PRIORS:
            cond = CONDITIONAL_PRIORS[attr]
            out[attr] = {v: round(sum(pres[p] * cond[p][v] for p in pres), 6) for v in values}
        elif attr == "bangs":
            p_bald = sum(pres[p] * CONDITIONAL_PRIORS["hair_style"][p]["bald"] for p in pres)
            p_true = round((1 - p_bald) * BANGS_IF_HAIR, 6)
            out[attr] = {False: round(1 - p_true, 6), True: p_true}
    return out


PRIORS: dict[str, dict] = _marginals()

# --- nuisance palettes (the renderer reads these fields; captions mention some of them sometimes) ---
GLASSES_STYLES = ("round", "square")
HAT_STYLES = ("beanie", "cap", "fedora")
BEARD_STYLES = ("full", "goatee")
NAMED_COLORS: dict[str, RGB] = {
    "red": (205, 40, 45),
    "blue": (40, 80, 200),
    "green": (40, 150, 60),
    "purple": (125, 50, 165),
    "orange": (235, 125, 25),
    "pink": (230, 100, 170),
    "yellow": (235, 200, 30),
    "black": (35, 35, 40),
}
HAT_COLORS = ("red", "blue", "green", "purple", "orange", "pink", "yellow")
GLASSES_COLORS = ("black", "red", "blue", "purple")
EYE_COLORS: tuple[RGB, ...] = ((70, 45, 25), (40, 90, 160), (60, 120, 70), (90, 70, 50))
MAKEUP_COLORS: tuple[RGB, ...] = ((140, 80, 200), (60, 120, 220), (220, 90, 170), (170, 110, 60))
ACCENT_COLORS: tuple[RGB, ...] = ((200, 35, 40), (40, 70, 170), (30, 30, 35), (40, 140, 70))


@dataclass(frozen=True)
class Face:
    """One portrait: the 12 attributes (public vocabulary) plus the nuisance variables of the renderer."""

    presentation: str = "man"
    skin: str = "medium"
    hair_style: str = "short"
    hair_color: str = "brown"
    bangs: bool = False
    glasses: bool = False
    expression: str = "neutral"
    beard: bool = False
    hat: bool = False
    makeup: bool = False
    role: str = "none"
    horror: bool = False
    # nuisance
    background: RGB = (200, 215, 235)
    shirt_color: RGB = (70, 110, 190)
    head_scale: float = 1.0
    head_dx: float = 0.0
    head_dy: float = 0.0
    rotation: float = 0.0
    eye_color: RGB = (70, 45, 25)
    glasses_style: str = "round"
    glasses_color: str = "black"
    hat_style: str = "beanie"
    hat_color: str = "red"
    beard_style: str = "full"
    makeup_color: RGB = (140, 80, 200)
    accent_color: RGB = (200, 35, 40)

    def __post_init__(self) -> None:
        for attr, values in ATTRIBUTES.items():
            value = getattr(self, attr)
            if value not in values or (attr in BINARY and not isinstance(value, (bool, np.bool_))):
                raise UserError(f"Unknown value {value!r} for attribute {attr!r}; allowed: {_fmt(values)}.")
        if self.bangs and self.hair_style == "bald":
            raise UserError("bangs=True is impossible with hair_style='bald'; choose another hair style.")

    def labels(self) -> dict[str, str | bool]:
        """The 12 attributes only, JSON-ready (binary attributes as booleans)."""
        return {a: (bool(getattr(self, a)) if a in BINARY else getattr(self, a)) for a in ATTRIBUTES}

    def nuisance(self) -> dict[str, Any]:
        """The nuisance variables, JSON-ready (colours as lists)."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name not in ATTRIBUTES:
                v = getattr(self, f.name)
                out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    def to_dict(self) -> dict[str, Any]:
        return {**self.labels(), **self.nuisance()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Face:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise UserError(f"Unknown face field {unknown[0]!r}; allowed: {', '.join(sorted(names))}.")
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
        return cls(**kw)


def _fmt(values: tuple) -> str:
    return ", ".join("true" if v is True else "false" if v is False else str(v) for v in values)


def parse_value(attr: str, text: str | bool) -> str | bool:
    """Parse a user-given value (``"true"``, ``"doctor"``) for ``attr``; UserError if unknown."""
    if attr not in ATTRIBUTES:
        raise UserError(f"Unknown attribute {attr!r}; allowed: {', '.join(ATTRIBUTES)}{closest(attr, ATTRIBUTES)}.")
    values = ATTRIBUTES[attr]
    if isinstance(text, bool):
        value: str | bool = text
    elif attr in BINARY:
        low = str(text).strip().lower()
        if low in ("true", "1", "yes"):
            value = True
        elif low in ("false", "0", "no"):
            value = False
        else:
            value = low
    else:
        value = str(text).strip().lower()
    if value not in values or (attr in BINARY and not isinstance(value, bool)):
        raise UserError(
            f"Unknown value {text!r} for attribute {attr!r}; allowed: {_fmt(values)}{closest(text, [str(v).lower() for v in values])}."
        )
    return value


def parse_assignments(items: list[str] | None) -> dict[str, str | bool]:
    """``["role=doctor", "glasses=true"]`` -> ``{"role": "doctor", "glasses": True}``; UserError on bad input."""
    out: dict[str, str | bool] = {}
    for item in items or []:
        for part in item.split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise UserError(f"Expected ATTRIBUTE=VALUE, got {part!r}; attributes: {', '.join(ATTRIBUTES)}.")
            attr, _, val = part.partition("=")
            attr = attr.strip()
            out[attr] = parse_value(attr, val)
    return out


def _draw(rng: np.random.Generator, dist: Mapping) -> Any:
    values = list(dist)
    u = rng.random()
    acc = 0.0
    for v in values:
        acc += dist[v]
        if u < acc:
            return v
    return values[-1]


def _rgb_from_hsv(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return (int(round(r * 255)), int(round(g * 255)), int(round(b * 255)))


def sample_face(rng: np.random.Generator, fixed: Mapping[str, Any] | None = None) -> Face:
    """Draw a face from the priors. ``fixed`` pins attributes (the rest follow the priors given them).

    The generator is consumed identically whatever ``fixed`` holds, so pinning one attribute leaves
    the others' draws (and the nuisance) unchanged.
    """
    fixed = dict(fixed or {})
    for attr, value in fixed.items():
        if parse_value(attr, value) != value:
            raise UserError(f"Unknown value {value!r} for attribute {attr!r}; allowed: {_fmt(ATTRIBUTES[attr])}.")
    if fixed.get("bangs") is True and fixed.get("hair_style") == "bald":
        raise UserError("bangs=True is impossible with hair_style='bald'; choose another hair style.")

    def pick(attr: str, dist: Mapping) -> Any:
        drawn = _draw(rng, dist)
        return fixed.get(attr, drawn)

    a: dict[str, Any] = {}
    pres = dict(_INDEPENDENT["presentation"])
    if "presentation" not in fixed:  # P(presentation | pinned attributes), e.g. most pinned doctors are men
        for attr, cond in CONDITIONAL_PRIORS.items():
            if attr in fixed:
                pres = {k: v * cond[k][fixed[attr]] for k, v in pres.items()}
        total = sum(pres.values())
        if total <= 0:
            raise UserError(f"The pinned values {fixed} have zero prior probability together; relax one of them.")
        pres = {k: v / total for k, v in pres.items()}
    a["presentation"] = pick("presentation", pres)
    p = a["presentation"]
    a["skin"] = pick("skin", _INDEPENDENT["skin"])
    hs = CONDITIONAL_PRIORS["hair_style"][p]
    if fixed.get("bangs") is True and "hair_style" not in fixed:
        hs = {k: (0.0 if k == "bald" else v / (1 - hs["bald"])) for k, v in hs.items()}
    a["hair_style"] = pick("hair_style", hs)
    a["hair_color"] = pick("hair_color", _INDEPENDENT["hair_color"])
    bangs = rng.random() < BANGS_IF_HAIR
    a["bangs"] = bool(fixed.get("bangs", bangs and a["hair_style"] != "bald"))
    for attr in ("glasses", "expression"):
        a[attr] = pick(attr, _INDEPENDENT[attr])
    a["beard"] = pick("beard", CONDITIONAL_PRIORS["beard"][p])
    a["hat"] = pick("hat", _INDEPENDENT["hat"])
    a["makeup"] = pick("makeup", CONDITIONAL_PRIORS["makeup"][p])
    a["role"] = pick("role", CONDITIONAL_PRIORS["role"][p])
    a["horror"] = pick("horror", _INDEPENDENT["horror"])
    for k in BINARY:
        a[k] = bool(a[k])

    # nuisance: pastel background, saturated shirt (no teal: that is the nurses' scrubs), geometry
    bg = _rgb_from_hsv(rng.random(), 0.12 + 0.25 * rng.random(), 0.80 + 0.17 * rng.random())
    hue = rng.random() * 0.8
    if hue > 0.40:  # skip the teal/cyan band 0.40-0.60
        hue += 0.2
    shirt = _rgb_from_hsv(hue, 0.45 + 0.35 * rng.random(), 0.55 + 0.3 * rng.random())
    n = dict(
        background=bg,
        shirt_color=shirt,
        head_scale=round(0.92 + 0.16 * rng.random(), 3),
        head_dx=round(float(rng.uniform(-10, 10)), 2),
        head_dy=round(float(rng.uniform(-7, 7)), 2),
        rotation=round(float(rng.uniform(-7, 7)), 2),
        eye_color=EYE_COLORS[int(rng.integers(len(EYE_COLORS)))],
        glasses_style=GLASSES_STYLES[int(rng.integers(len(GLASSES_STYLES)))],
        glasses_color=GLASSES_COLORS[int(rng.integers(len(GLASSES_COLORS)))],
        hat_style=HAT_STYLES[int(rng.integers(len(HAT_STYLES)))],
        hat_color=HAT_COLORS[int(rng.integers(len(HAT_COLORS)))],
        beard_style=BEARD_STYLES[int(rng.integers(len(BEARD_STYLES)))],
        makeup_color=MAKEUP_COLORS[int(rng.integers(len(MAKEUP_COLORS)))],
        accent_color=ACCENT_COLORS[int(rng.integers(len(ACCENT_COLORS)))],
    )
    return Face(**a, **n)


def schema_dict() -> dict[str, Any]:
    """JSON-ready schema: attributes, marginal and conditional priors (the synonyms are added by the CLI)."""

    def js(d: Mapping) -> dict:
        return {("true" if k is True else "false" if k is False else k): v for k, v in d.items()}

    return {
        "image_size": 64,
        "attributes": {a: list(v) for a, v in ATTRIBUTES.items()},
        "binary": list(BINARY),
        "priors": {a: js(d) for a, d in PRIORS.items()},
        "conditional_priors": {
            a: {"given": "presentation", **{p: js(d) for p, d in c.items()}} for a, c in CONDITIONAL_PRIORS.items()
        }
        | {
            "bangs": {
                "given": "hair_style",
                "bald": {"false": 1.0, "true": 0.0},
                "other": js({False: 1 - BANGS_IF_HAIR, True: BANGS_IF_HAIR}),
            }
        },
        "nuisance": {
            "background": "pastel colour (HSV s 0.12-0.37, v 0.80-0.97)",
            "shirt_color": "saturated colour, any hue but teal (role none only)",
            "head_scale": [0.92, 1.08],
            "head_dx": [-10, 10],
            "head_dy": [-7, 7],
            "rotation_degrees": [-7, 7],
            "glasses_style": list(GLASSES_STYLES),
            "glasses_color": list(GLASSES_COLORS),
            "hat_style": list(HAT_STYLES),
            "hat_color": list(HAT_COLORS),
            "beard_style": list(BEARD_STYLES),
        },
        "notes": {
            "hair_color": "invisible when hair_style is bald (unless there is a beard); scored only where hair_style != bald",
            "bangs": "always false when hair_style is bald",
        },
    }
