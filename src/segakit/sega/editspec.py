"""The command line's compact edit syntax: ``[+|-]CONCEPT[:KEY=VALUE,...]``.

    +glasses                      add glasses with the default parameters
    -beard                        remove a beard (reverse direction)
    "+gray hair:s=6,t=0.95,w=5"   scale 6, threshold 0.95, warm-up 5
    "+smile:c=15,wt=2"            cool down at step 15, weight 2

Keys (long or short): scale (s), threshold (t), warmup (w), cooldown (c; "none" for never), weight (wt).
"""

from __future__ import annotations

import re
from dataclasses import replace

from segakit.core.errors import UserError
from segakit.sega.guidance import Edit

KEYS = {"scale": "scale", "s": "scale", "threshold": "threshold", "t": "threshold", "warmup": "warmup",
        "w": "warmup", "cooldown": "cooldown", "c": "cooldown", "weight": "weight", "wt": "weight"}  # fmt: skip
ALLOWED = "scale (s), threshold (t), warmup (w), cooldown (c), weight (wt)"
_PARAMS = re.compile(r"^\s*[A-Za-z]+\s*=[^,]*(,\s*[A-Za-z]+\s*=[^,]*)*$")


def parse_edit(spec: str, defaults: Edit | None = None) -> Edit:
    """One ``--edit`` value to an :class:`Edit`; bad specs raise :class:`UserError`.

    Keys not given stay unset (the model's defaults apply when the pipeline runs, as for ``Edit(...)``),
    unless ``defaults`` fills them now.
    """
    base = defaults or Edit()
    text = spec.strip()
    reverse = False
    if text[:1] in "+-" and text:
        reverse = text[0] == "-"
        text = text[1:].strip()
    params: dict[str, float | int | None] = {}
    head, sep, tail = text.rpartition(":")
    if sep and _PARAMS.match(tail):
        text = head.strip()
        for item in tail.split(","):
            key, _, raw = (part.strip() for part in item.partition("="))
            name = KEYS.get(key.lower())
            if name is None:
                raise UserError(f"Edit spec {spec!r} has unknown key {key!r}; allowed keys: {ALLOWED}.")
            params[name] = _value(spec, name, raw)
    elif sep and "=" in tail:
        raise UserError(f"Edit spec {spec!r} has malformed parameters {tail!r}; write KEY=VALUE pairs separated by commas.")
    if not text:
        raise UserError(f"Edit spec {spec!r} names no concept; write for example '+glasses' or '-beard:s=6'.")
    return replace(base, prompt=text, reverse=reverse, **params)


def _value(spec: str, name: str, raw: str) -> float | int | None:
    try:
        if name in ("warmup", "cooldown"):
            if name == "cooldown" and raw.lower() == "none":
                return None
            return int(raw)
        return float(raw)
    except ValueError:
        kind = "a whole number of steps" if name in ("warmup", "cooldown") else "a number"
        raise UserError(f"Edit spec {spec!r}: {name} value {raw!r} is not {kind}.") from None


def format_edit(edit: Edit) -> str:
    """The spec that :func:`parse_edit` reads back to ``edit`` (unset fields stay out of it)."""
    cooldown = "none" if edit.cooldown is None else str(edit.cooldown)
    sign = "-" if edit.reverse else "+"
    given = [f"{key}={value:g}" for key, value in (("s", edit.scale), ("t", edit.threshold), ("w", edit.warmup)) if value is not None]
    return f"{sign}{edit.prompt}:" + ",".join([*given, f"c={cooldown}", f"wt={edit.weight:g}"])
