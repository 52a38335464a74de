"""The command line's compact edit syntax: ``[+|-]CONCEPT[:KEY=VALUE,...]``.

    +glasses                      add glasses with the default parameters
    -beard                        remove a beard (reverse direction)
    "+gray hair:s=6,t=0.95,w=5"   scale 6, threshold 0.95, warm-up 5
    "+smile:c=15,wt=2"            cool down at step 15, weight 2

Keys (long or short): scale (s), threshold (t), warmup (w), cooldown (c; "none" for never), weight (wt).

Specs that say nothing or contradict themselves are refused (UserError): no concept (``+``, ``-:s=6``,
only separators such as ``+,:``), a cool-down at or before the warm-up (the edit would never act), a
warm-up given at or past the last step, parameters that lost their colon (``+glasses s=6``). Warned about
(the run goes on): a default warm-up at or past the last step, the same concept both added and removed.
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
_LOST_COLON = re.compile(r"(?:^|[\s,;])(" + "|".join(KEYS) + r")\s*=", re.IGNORECASE)


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
        raise UserError(
            f"Edit spec {spec!r} has malformed parameters {tail!r}; write KEY=VALUE pairs separated by commas."
        )
    if not re.search(r"\w", text):
        raise UserError(f"Edit spec {spec!r} names no concept; write for example '+glasses' or '-beard:s=6'.")
    lost = _LOST_COLON.search(text)
    if lost:
        concept = text[: lost.start()].strip(" ,;") or "glasses"
        raise UserError(f"Edit spec {spec!r} has {lost.group(1)}=... inside the concept; parameters follow a colon: "
                        f"'{'-' if reverse else '+'}{concept}:{text[lost.start():].strip(' ,;')}'.")  # fmt: skip
    edit = replace(base, prompt=text, reverse=reverse, **params)
    if "warmup" in params and "cooldown" in params and edit.cooldown is not None and edit.cooldown <= edit.warmup:
        raise UserError(f"Edit spec {spec!r} cools down at step {edit.cooldown}, at or before its warm-up {edit.warmup}, "
                        "so it would never act; make the cool-down later than the warm-up.")  # fmt: skip
    return edit


def check_edits(edits: list[Edit], defaults: Edit, steps: int, strict: bool = True) -> list[str]:
    """Contradictions between ``edits``, the model's ``defaults`` and the step count: refused, or returned as warnings.

    ``strict=False`` (a run read back from a PNG, to be reproduced as it was) returns every finding as a warning.
    """
    try:
        return _check_edits(edits, defaults, steps)
    except UserError as exc:
        if strict:
            raise
        return [str(exc)[0].lower() + str(exc)[1:].rstrip(".")]


def _check_edits(edits: list[Edit], defaults: Edit, steps: int) -> list[str]:
    warnings = []
    for edit in edits:
        full = edit.with_defaults(defaults)
        spec = f"{'-' if edit.reverse else '+'}{edit.prompt}"
        origin = " (the model's default)" if edit.warmup is None else ""
        if full.cooldown is not None and full.cooldown <= full.warmup:
            raise UserError(f"Edit {spec!r} cools down at step {full.cooldown}, at or before its warm-up {full.warmup}{origin}, "
                            "so it would never act; make the cool-down later than the warm-up.")  # fmt: skip
        if full.warmup >= steps:
            message = (f"edit {spec!r} warms up at step {full.warmup}{origin}, but the run has {steps} steps (0-{steps - 1}), "
                       "so it would never act")  # fmt: skip
            if edit.warmup is not None:
                raise UserError(f"{message[0].upper()}{message[1:]}; use a smaller w= or more --steps.")
            warnings.append(f"{message}; give w= below {steps} or more --steps.")
    seen = {(e.prompt.strip().lower(), e.reverse) for e in edits if e.prompt}
    for concept, reverse in sorted(seen):
        if not reverse and (concept, True) in seen:
            warnings.append(f"'{concept}' is both added and removed; the two edits work against each other.")
    return warnings


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
    given = [
        f"{key}={value:g}"
        for key, value in (("s", edit.scale), ("t", edit.threshold), ("w", edit.warmup))
        if value is not None
    ]
    return f"{sign}{edit.prompt}:" + ",".join([*given, f"c={cooldown}", f"wt={edit.weight:g}"])
