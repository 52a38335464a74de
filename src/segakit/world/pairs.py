"""Ground-truth edit pairs: the same identity (every other attribute and all nuisance equal) with one
attribute changed (20% of pairs: two), an instruction in natural words with the right pronouns, and
source/target captions -- a MagicBrush-style record.

>>> from segakit.world.pairs import pairs
>>> p = next(pairs(1, seed=0))
>>> p.instruction, p.changes, p.source_caption, p.target_caption
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segakit.core.atomic import atomic_append, atomic_open, ensure_writable_dir
from segakit.core.errors import UserError, closest
from segakit.world.captions import CONCEPTS, HAT_WORDS, ROLE_NOUNS, hair_color_visible, plan_caption, realize
from segakit.world.dataset import PAIR_STREAM, check_count, file_name, name_width, png_bytes, record_field, rng_for
from segakit.world.render import render
from segakit.world.schema import ATTRIBUTES, BINARY, Face, sample_face

P_TWO_CHANGES = 0.2
P_NOUN_REFERENT = 0.25

# Instruction templates; {obj} him/her, {pos} his/her, {subj} he/she (or "the woman", "the doctor", ...).
ADD: dict[str, list[str]] = {
    "glasses": [
        "give {obj} glasses",
        "put glasses on {obj}",
        "add glasses",
        "make {obj} wear glasses",
        "let {obj} wear spectacles",
        "add eyeglasses to {pos} face",
        "{subj} should wear glasses",
    ],
    "hat": [
        "put a hat on {obj}",
        "give {obj} a hat",
        "add a hat",
        "make {obj} wear a hat",
        "put {hat_a} {hat_color} {hat_word} on {pos} head",
        "give {obj} {hat_a} {hat_color} {hat_word}",
    ],
    "beard": [
        "give {obj} a beard",
        "add a beard",
        "let {obj} grow a beard",
        "make {obj} bearded",
        "put a beard on {pos} face",
    ],
    "makeup": [
        "put makeup on {obj}",
        "give {obj} makeup",
        "add makeup",
        "give {obj} lipstick and eye shadow",
        "make {obj} wear makeup",
        "put lipstick on {obj}",
    ],
    "bangs": ["give {obj} bangs", "add bangs", "cut bangs into {pos} hair", "give {obj} a fringe"],
    "horror": [
        "turn {obj} into a zombie",
        "make {obj} a zombie",
        "zombify {obj}",
        "make {obj} look undead",
        "make {obj} a zombie with green skin",
    ],
}
REMOVE: dict[str, list[str]] = {
    "glasses": [
        "take off {pos} glasses",
        "remove {pos} glasses",
        "remove the glasses",
        "get rid of {pos} glasses",
        "make {obj} take off the glasses",
    ],
    "hat": [
        "take off {pos} hat",
        "remove {pos} hat",
        "remove the hat",
        "get rid of the hat",
        "make {obj} take off {pos} hat",
    ],
    "beard": [
        "shave {pos} beard",
        "remove {pos} beard",
        "shave off the beard",
        "make {obj} clean-shaven",
        "get rid of the beard",
    ],
    "makeup": ["remove {pos} makeup", "wipe off {pos} makeup", "take off the makeup", "remove the lipstick"],
    "bangs": ["remove {pos} bangs", "take away the bangs", "get rid of {pos} fringe", "sweep {pos} bangs away"],
    "horror": [
        "turn {obj} back into a human",
        "make {obj} human again",
        "cure {obj} of being a zombie",
        "make {obj} look alive again",
        "remove the zombie look",
    ],
}
TO_VALUE: dict[str, dict[str, list[str]]] = {
    "expression": {
        "smile": ["make {obj} smile", "make {obj} happy", "give {obj} a smile", "have {obj} smile", "let {obj} smile"],
        "frown": ["make {obj} frown", "make {obj} sad", "give {obj} a frown", "make {obj} look grumpy"],
        "neutral": ["give {obj} a neutral expression", "make {obj} look serious", "make {pos} face neutral"],
    },
    "hair_style": {
        "bald": ["make {obj} bald", "shave {pos} head", "remove {pos} hair", "give {obj} a bald head"],
        "short": ["give {obj} short hair", "cut {pos} hair short", "make {pos} hair short"],
        "long": ["give {obj} long hair", "make {pos} hair long", "let {pos} hair grow long"],
        "curly": ["give {obj} curly hair", "make {pos} hair curly", "curl {pos} hair"],
    },
    "hair_color": {
        c: [
            "dye {pos} hair " + c,
            "make {pos} hair " + c,
            "give {obj} " + c + " hair",
            "change {pos} hair color to " + c,
            "turn {pos} hair " + c,
        ]
        for c in ATTRIBUTES["hair_color"]
    },
    "skin": {
        v: ["make {pos} skin " + v, "give {obj} " + v + " skin", "change {pos} skin tone to " + v]
        for v in ATTRIBUTES["skin"]
    },
    "presentation": {
        "woman": [
            "turn {obj} into a woman",
            "make {obj} a woman",
            "make {obj} female",
            "make {obj} look like a woman",
            "change {pos} gender to female",
        ],
        "man": [
            "turn {obj} into a man",
            "make {obj} a man",
            "make {obj} male",
            "make {obj} look like a man",
            "change {pos} gender to male",
        ],
    },
    "role": {
        **{
            r: [
                "make {obj} a " + r,
                "dress {obj} as a " + r,
                "turn {obj} into a " + r,
                "give {obj} a " + r + "'s uniform",
                "put {obj} in " + r + " clothes",
            ]
            for r in ("doctor", "nurse", "chef", "firefighter")
        },
        "none": [
            "put {obj} in casual clothes",
            "take off {pos} uniform",
            "dress {obj} in a t-shirt",
            "make {obj} wear a plain t-shirt",
        ],
    },
}
EXTRA: dict[tuple[str, Any, Any], list[str]] = {  # phrasings that only fit a particular change
    ("expression", "smile", "neutral"): ["make {obj} stop smiling"],
    ("expression", "frown", "neutral"): ["make {obj} stop frowning"],
    ("expression", "frown", "smile"): ["turn {pos} frown into a smile", "cheer {obj} up"],
    ("hair_style", "bald", "short"): ["let {pos} hair grow back short"],
    ("hair_style", "bald", "long"): ["give {obj} a full head of long hair"],
}
PRONOUNS = {"man": {"subj": "he", "obj": "him", "pos": "his"}, "woman": {"subj": "she", "obj": "her", "pos": "her"}}
SKIN_ORDER = ATTRIBUTES["skin"]


@dataclass
class EditPair:
    index: int
    source: Face
    target: Face
    instruction: str
    source_caption: str
    target_caption: str
    changes: dict[str, tuple]  # attribute -> (old, new)
    source_image: Image.Image
    target_image: Image.Image

    def record(self, source_file: str, target_file: str) -> dict[str, Any]:
        """The JSON line of ``pairs.jsonl``."""
        return {
            "id": self.index,
            "source": source_file,
            "target": target_file,
            "instruction": self.instruction,
            "source_caption": self.source_caption,
            "target_caption": self.target_caption,
            "changes": {a: list(v) for a, v in self.changes.items()},
            "source_labels": self.source.labels(),
            "target_labels": self.target.labels(),
            "nuisance": self.source.nuisance(),
        }


def editable(face: Face, attributes: Sequence[str] | None = None) -> list[str]:
    """Attributes that can change on ``face`` with a visible, valid result."""
    out = []
    for a in attributes or ATTRIBUTES:
        if a == "bangs" and face.hair_style == "bald":
            continue
        if a == "hair_color" and not hair_color_visible(face):
            continue
        if _new_values(face, a):
            out.append(a)
    return out


def _new_values(face: Face, attr: str) -> list:
    old = getattr(face, attr)
    vals = [v for v in ATTRIBUTES[attr] if v != old]
    if attr == "hair_style" and face.bangs:
        vals = [v for v in vals if v != "bald"]
    return vals


def _referent(face: Face, rng: np.random.Generator) -> dict[str, str]:
    if rng.random() >= P_NOUN_REFERENT:
        return dict(PRONOUNS[face.presentation])
    if face.horror and rng.random() < 0.3:
        noun = "zombie"
    elif face.role != "none" and rng.random() < 0.5:
        noun = ROLE_NOUNS[face.role][0]
    else:
        noun = face.presentation
    return {"subj": f"the {noun}", "obj": f"the {noun}", "pos": f"the {noun}'s"}


def relative_skin(instruction: str) -> bool:
    """Whether ``instruction`` asks for skin by side ("darker", "lighter": :func:`instruction_for`'s relative
    phrasings) rather than naming a tone."""
    return "darker" in instruction or "lighter" in instruction


def skin_side(old: str, new: str) -> tuple[str, ...]:
    """Every tone on the side of ``old`` that ``new`` lies on (darker or lighter), in :data:`SKIN_ORDER`."""
    i = SKIN_ORDER.index(old)
    return tuple(SKIN_ORDER[i + 1 :] if SKIN_ORDER.index(new) > i else SKIN_ORDER[:i])


def instructed_values(attr: str, old: Any, new: Any, instruction: str) -> tuple:
    """The values of ``attr`` that follow ``instruction``: ``(new,)``; for a relative skin instruction ("darker",
    "lighter"), which names a side and whose pair's ``new`` is one tone on it drawn at random, every tone on that side
    of ``old`` (:func:`skin_side`)."""
    if attr == "skin" and relative_skin(instruction):
        return skin_side(old, new)
    return (new,)


def instruction_for(source: Face, attr: str, new: Any, rng: np.random.Generator, ref: dict[str, str]) -> str:
    old = getattr(source, attr)
    if attr in BINARY:
        options = ADD[attr] if new else REMOVE[attr]
    else:
        options = list(TO_VALUE[attr][new]) + EXTRA.get((attr, old, new), [])
        if attr == "skin":
            direction = "darker" if SKIN_ORDER.index(new) > SKIN_ORDER.index(old) else "lighter"
            options += ["make {pos} skin " + direction, "give {obj} " + direction + " skin"]
        if attr == "hair_color" and source.hair_style == "bald":
            options = ["dye {pos} beard " + new, "make {pos} beard " + new, "give {obj} " + new + " beard"]
    text = options[int(rng.integers(len(options)))]
    hat_word = HAT_WORDS[source.hat_style][0]
    hat_a = "an" if source.hat_color[0] in "aeiou" else "a"
    return text.format(**ref, hat_a=hat_a, hat_color=source.hat_color, hat_word=hat_word)


def pair_change_at(seed: int, index: int, attributes: Sequence[str] | None = None, stream: int = PAIR_STREAM):
    """The faces and words of edit pair ``index`` of ``seed``, nothing rendered: ``(source, target, instruction,
    changes, rng)``, the generator left where the pair's captions are drawn from. ``stream`` picks another random
    stream of the same seed (the caption writer's training data uses its own)."""
    rng = rng_for(seed, index, stream)
    for _ in range(100):  # a face on which some allowed attribute can change (almost always the first)
        source = sample_face(rng)
        if editable(source, attributes):
            break
    else:
        raise UserError(f"No face could be edited along {list(attributes or [])}; choose other attributes.")
    n_changes = 2 if rng.random() < P_TWO_CHANGES else 1
    ref = _referent(source, rng)
    target = source
    changes: dict[str, tuple] = {}
    parts = []
    for _ in range(n_changes):
        options = [a for a in editable(target, attributes) if a not in changes]
        if not options:
            break
        attr = options[int(rng.integers(len(options)))]
        values = _new_values(target, attr)
        new = values[int(rng.integers(len(values)))]
        parts.append(instruction_for(target, attr, new, rng, ref))
        changes[attr] = (getattr(source, attr), new)
        target = dataclasses.replace(target, **{attr: new})
    return source, target, " and ".join(parts), changes, rng


def pair_at(seed: int, index: int, attributes: Sequence[str] | None = None) -> EditPair:
    """Edit pair ``index`` of ``seed`` (deterministic); ``attributes`` limits which attributes may change."""
    source, target, instruction, changes, rng = pair_change_at(seed, index, attributes)
    plan = plan_caption(source, rng, force=list(changes), kind="full")
    return EditPair(
        index=index,
        source=source,
        target=target,
        instruction=instruction,
        source_caption=realize(plan, source),
        target_caption=realize(plan, target),
        changes=changes,
        source_image=render(source),
        target_image=render(target),
    )


def check_attributes(attributes: Sequence[str] | None) -> list[str] | None:
    if not attributes:
        return None
    for a in attributes:
        if a not in ATTRIBUTES:
            raise UserError(f"Unknown attribute {a!r}; allowed: {', '.join(ATTRIBUTES)}{closest(a, ATTRIBUTES)}.")
    return list(attributes)


def pairs(n: int, seed: int, start: int = 0, attributes: Sequence[str] | None = None) -> Iterator[EditPair]:
    """Yield edit pairs ``start .. start+n-1`` of ``seed``, one at a time."""
    check_count(n, seed, start)
    attributes = check_attributes(attributes)
    for i in range(start, start + n):
        yield pair_at(seed, i, attributes)


PAIRS_PATTERN = r"^(\d+)_source\.png$"  # the numbered pairs of a pairs folder


def write_pairs(
    out: Path | str,
    n: int,
    seed: int,
    start: int = 0,
    attributes: Sequence[str] | None = None,
    on_item: Callable[[int], None] | None = None,
) -> Path:
    """Write ``NNNNNN_source.png``, ``NNNNNN_target.png`` and ``pairs.jsonl`` to ``out``; streams (``pairs.jsonl``
    keeps the records already there, but those of the pairs written again, and gets the new ones appended)."""
    check_count(n, seed, start)
    attributes = check_attributes(attributes)
    out = ensure_writable_dir(Path(out))
    width = name_width(start, n)
    path = out / "pairs.jsonl"
    names = {file_name(start + k, width, "_source") for k in range(n)}
    with atomic_append(
        path, keep=lambda line: record_field(line, "source") not in names
    ) as fh:  # appended, never rewritten
        for k, p in enumerate(pairs(n, seed, start, attributes)):
            src, tgt = file_name(p.index, width, "_source"), file_name(p.index, width, "_target")
            for name, img in ((src, p.source_image), (tgt, p.target_image)):
                with atomic_open(out / name, "wb") as img_fh:
                    img_fh.write(png_bytes(img))
            fh.write((json.dumps(p.record(src, tgt)) + "\n").encode())
            if on_item:
                on_item(k + 1)
    return path


__all__ = ["EditPair", "pairs", "pair_at", "write_pairs", "editable", "CONCEPTS"]
