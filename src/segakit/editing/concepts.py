"""SEGA edit concepts from an instruction, in the faces world's vocabulary (``segakit edit --method sega``
without ``--concept``).

The rule, in order:

1. **The world's own phrasings.** The instruction is split into clauses at " and " (where the left part is a
   whole phrasing) and each clause is matched in full against every instruction template the world's edit pairs
   use (``segakit.world.pairs``: ``ADD``, ``REMOVE``, ``TO_VALUE``, ``EXTRA``, the relative skin and the bald
   beard-colour phrasings; a pronoun or "the <noun>" stands for the person). A match names the attribute and its
   new value.
2. **Otherwise, the world's words.** The attribute values that the world's caption parser reads in the
   instruction (``segakit.world.captions.parse_caption``: "glasses", "red hair", "without a hat", ...); a value
   of a yes/no attribute is removed when the instruction says so ("remove", "take off", "get rid of", "shave",
   "wipe", "without", "no ", "stop", "cure").
3. **Nothing found:** :class:`UserError`, one sentence that asks for ``--concept``.

A change becomes concepts in the world's first word for each value (``CONCEPTS``): a yes/no attribute turned on
is ``+glasses``, turned off ``-glasses``; a value of a many-valued attribute is ``+brown hair``, and when the
source caption states the old value (``source_caption=``), ``-blond hair`` beside it. Works for any model (the
words are plain English); the embedded model was trained on exactly these words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from segakit.core.errors import UserError
from segakit.world.captions import CONCEPTS, HAT_WORDS, ROLE_NONE, parse_caption
from segakit.world.pairs import ADD, EXTRA, REMOVE, TO_VALUE
from segakit.world.schema import ATTRIBUTES, BINARY

REMOVAL_CUES = ("remove", "take off", "take away", "get rid of", "shave", "wipe", "without", "no ", "stop", "cure")
_PERSON = r"(?:him|her|them|he|she|the [a-z-]+)"
_POSSESSIVE = r"(?:his|her|their|the [a-z-]+'s)"
_HAT_WORDS = (
    "(?:" + "|".join(sorted({re.escape(w) for ws in HAT_WORDS.values() for w in ws}, key=len, reverse=True)) + ")"
)
_SLOTS = {
    "{obj}": _PERSON,
    "{subj}": _PERSON,
    "{pos}": _POSSESSIVE,
    "{hat_a}": "an?",
    "{hat_color}": r"[a-z]+",
    "{hat_word}": _HAT_WORDS,
}
RELATIVE_SKIN = {"darker": "dark", "lighter": "light"}  # "make his skin darker": the concept is the far end


@dataclass(frozen=True)
class Change:
    """One attribute the instruction asks to change, and to what."""

    attribute: str
    value: Any


def _pattern(template: str) -> re.Pattern:
    parts = re.split(r"(\{[a-z_]+\})", template)
    return re.compile("".join(_SLOTS.get(p, re.escape(p)) for p in parts))


@lru_cache(maxsize=1)
def _templates() -> list[tuple[re.Pattern, Change]]:
    found: list[tuple[str, Change]] = []
    for attr, texts in ADD.items():
        found += [(t, Change(attr, True)) for t in texts]
    for attr, texts in REMOVE.items():
        found += [(t, Change(attr, False)) for t in texts]
    for attr, by_value in TO_VALUE.items():
        for value, texts in by_value.items():
            found += [(t, Change(attr, value)) for t in texts]
    for (attr, _old, new), texts in EXTRA.items():
        found += [(t, Change(attr, new)) for t in texts]
    for word in RELATIVE_SKIN:
        found += [
            ("make {pos} skin " + word, Change("skin", word)),
            ("give {obj} " + word + " skin", Change("skin", word)),
        ]
    for c in ATTRIBUTES["hair_color"]:
        found += [
            (t.replace("{c}", c), Change("hair_color", c))
            for t in ("dye {pos} beard {c}", "make {pos} beard {c}", "give {obj} {c} beard")
        ]
    # longest first, so that "make {obj} a zombie with green skin" wins over a shorter phrasing
    return [(_pattern(t), ch) for t, ch in sorted(found, key=lambda tc: -len(tc[0]))]


def _match_clause(clause: str) -> Change | None:
    for pat, change in _templates():
        if pat.fullmatch(clause):
            return change
    return None


def _match_all(text: str) -> list[Change] | None:
    """The changes of ``text`` if it is a chain of world phrasings joined by " and ", else None."""
    whole = _match_clause(text)
    if whole is not None:
        return [whole]
    for m in re.finditer(r" and ", text):
        left = _match_clause(text[: m.start()])
        if left is not None:
            rest = _match_all(text[m.end() :])
            if rest is not None:
                return [left, *rest]
    return None


def _from_words(text: str) -> list[Change]:
    removing = any(cue in f" {text} " for cue in REMOVAL_CUES)
    changes = []
    for attr, values in parse_caption(text).items():
        for value in sorted(values, key=str):
            if attr in BINARY and value is True and removing:
                value = False
            changes.append(Change(attr, value))
    return changes


def instruction_changes(instruction: str) -> list[Change]:
    """What ``instruction`` asks to change, by the module's rule (steps 1 and 2); may be empty."""
    text = " ".join(instruction.lower().strip().rstrip(".!").split())
    return _match_all(text) or _from_words(text)


def _word(attr: str, value: Any) -> str | None:
    if attr == "skin" and value in RELATIVE_SKIN:
        value = RELATIVE_SKIN[value]
    if attr == "role" and value == "none":
        return ROLE_NONE[-1].removeprefix("in ")
    words = CONCEPTS[attr].get(True if attr in BINARY else value)
    return words[0] if words else None


def concepts_for(change: Change, source_caption: str | None = None) -> list[str]:
    """SEGA concepts of one change: ``+new`` (``-word`` for a yes/no attribute turned off), and ``-old`` when the
    source caption states one old value of a many-valued attribute."""
    attr, value = change.attribute, change.value
    if attr in BINARY:
        return [("+" if value else "-") + _word(attr, True)]
    out = ["+" + _word(attr, value)]
    stated = parse_caption(source_caption or "").get(attr, set()) if value not in RELATIVE_SKIN else set()
    if len(stated) == 1:
        (old,) = stated
        word = _word(attr, old)
        if old != value and word:
            out.append("-" + word)
    return out


def derive_concepts(instruction: str, source_caption: str | None = None) -> list[str]:
    """SEGA concepts for ``instruction`` (see the module's rule); :class:`UserError` when none can be derived."""
    concepts: list[str] = []
    for change in instruction_changes(instruction):
        concepts += [c for c in concepts_for(change, source_caption) if c not in concepts]
    if not concepts:
        raise UserError(
            f"No SEGA concept could be derived from the instruction {instruction!r} with the faces world's words "
            "(glasses, hat, beard, makeup, bangs, zombie, smile, hair styles and colours, skin tones, roles, man/woman); "
            "pass them with --concept, e.g. --concept +glasses."
        )
    return concepts
