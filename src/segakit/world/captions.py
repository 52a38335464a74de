"""Captions for faces: varied templates and synonyms, deterministic given the generator.

Three kinds, drawn per caption:

* ``empty`` (10%): ``""`` -- the unconditional prompt for classifier-free guidance;
* ``concept`` (25%): one attribute alone, as SEGA's edit prompts say it: ``"glasses"``, ``"a smiling face"``,
  ``"a zombie"``, ``"gray hair"``, ``"woman"``;
* ``full`` (65%): a noun phrase with a random subset of the attributes in random order, e.g.
  ``"a photo of a smiling female doctor with curly red hair, wearing glasses"``, or none at all
  (``"a face of a person"``). A false binary attribute is said as a negation (``"without a hat"``).

Which attributes a caption mentions is drawn independently of the face's values, so a caption says nothing
about the attributes it does not mention: given the caption, an unmentioned attribute follows the prior.
That is what keeps classifier-free guidance from skewing them: guidance pushes an image towards what makes
its caption more likely, and a caption whose silence hinted at a value ("no mention of glasses, so probably
none") would be pushed towards that value at every guidance step.

Every phrase used here is listed in :data:`SYNONYMS` (printed by ``segakit world schema --json``), and
:func:`parse_caption` reads the attributes back from a caption.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from segakit.world.schema import ATTRIBUTES, BINARY, Face

P_EMPTY = 0.10
P_CONCEPT = 0.25

# Short, concept-only captions (also the in-distribution forms of SEGA edit prompts).
CONCEPTS: dict[str, dict] = {
    "presentation": {"man": ["man", "a man", "male", "a guy"], "woman": ["woman", "a woman", "female", "a lady"]},
    "skin": {
        "light": ["light skin", "fair skin", "pale skin"],
        "medium-light": ["medium-light skin", "light tan skin"],
        "medium": ["medium skin", "tan skin", "olive skin"],
        "medium-dark": ["medium-dark skin", "brown skin"],
        "dark": ["dark skin", "dark brown skin"],
    },
    "hair_style": {
        "short": ["short hair"],
        "long": ["long hair"],
        "curly": ["curly hair"],
        "bald": ["bald", "a bald head", "bald head"],
    },
    "hair_color": {
        "black": ["black hair"],
        "brown": ["brown hair"],
        "blond": ["blond hair", "blonde hair"],
        "red": ["red hair", "ginger hair"],
        "gray": ["gray hair", "grey hair"],
    },
    "bangs": {True: ["bangs", "a fringe"]},
    "glasses": {True: ["glasses", "eyeglasses", "spectacles", "wearing glasses"]},
    "expression": {
        "smile": ["smile", "smiling", "a smiling face", "a happy face"],
        "neutral": ["neutral expression", "a serious face"],
        "frown": ["frown", "frowning", "a frowning face", "a sad face"],
    },
    "beard": {True: ["beard", "a beard", "bearded"]},
    "hat": {True: ["hat", "a hat", "wearing a hat"]},
    "makeup": {True: ["makeup", "lipstick", "wearing makeup"]},
    "role": {
        "doctor": ["doctor", "a doctor"],
        "nurse": ["nurse", "a nurse"],
        "chef": ["chef", "a chef"],
        "firefighter": ["firefighter", "a firefighter"],
    },
    "horror": {True: ["zombie", "a zombie", "undead"]},
}

# Words used inside full captions.
PERSON = {"man": ["man", "guy"], "woman": ["woman", "lady"]}
GENDER_ADJ = {"man": "male", "woman": "female"}
NEUTRAL_NOUNS = ["person", "face", "character"]
ROLE_NOUNS = {
    "doctor": ["doctor", "physician"],
    "nurse": ["nurse"],
    "chef": ["chef", "cook"],
    "firefighter": ["firefighter"],
}
ROLE_NONE = ["in a t-shirt", "in casual clothes"]
EXPRESSION_ADJ = {
    "smile": ["smiling", "happy", "cheerful"],
    "neutral": ["serious", "calm"],
    "frown": ["frowning", "sad", "grumpy"],
}
EXPRESSION_WITH = {
    "smile": ["with a smile", "with a big smile"],
    "neutral": ["with a neutral expression", "with a blank expression"],
    "frown": ["with a frown", "with a sad face"],
}
HORROR_ADJ = ["zombie", "undead"]
HAIR_STYLE_WORD = {"short": ["short"], "long": ["long"], "curly": ["curly"]}
HAIR_COLOR_WORD = {
    "black": ["black"],
    "brown": ["brown"],
    "blond": ["blond", "blonde"],
    "red": ["red", "ginger"],
    "gray": ["gray", "grey"],
}
HAIR_COLOR_ADJ = {
    "black": ["black-haired"],
    "brown": ["brown-haired", "brunette"],
    "blond": ["blond"],
    "red": ["red-haired", "redheaded"],
    "gray": ["gray-haired", "old", "elderly"],
}
BALD_WITH = ["with a bald head", "with a shaved head"]
SKIN_WITH = {v: [f"with {p}" for p in ps] for v, ps in CONCEPTS["skin"].items()}
GLASSES_WITH = ["with glasses", "wearing glasses", "with eyeglasses", "wearing spectacles"]
HAT_WORDS = {
    "beanie": ["beanie", "knit hat", "hat"],
    "cap": ["cap", "baseball cap", "hat"],
    "fedora": ["fedora", "hat"],
}
MAKEUP_WITH = ["wearing makeup", "with makeup", "with lipstick", "wearing lipstick and eye shadow"]
NEGATIONS = {
    "bangs": ["without bangs", "with no bangs"],
    "glasses": ["without glasses", "with no glasses"],
    "beard": ["clean-shaven", "without a beard"],
    "hat": ["without a hat", "bareheaded"],
    "makeup": ["without makeup", "with no makeup"],
    "horror": ["with healthy skin", "with a healthy complexion"],
}
TEMPLATES = [
    "{}",
    "a photo of {}",
    "a portrait of {}",
    "a cartoon of {}",
    "a drawing of {}",
    "a cartoon portrait of {}",
    "{}, cartoon",
    "a face of {}",
]
COLOR_HUES = [
    (0.04, "red"),
    (0.11, "orange"),
    (0.18, "yellow"),
    (0.45, "green"),
    (0.53, "teal"),
    (0.70, "blue"),
    (0.85, "purple"),
    (0.96, "pink"),
    (1.01, "red"),
]

# How many attributes a full caption mentions (0..7); which ones is uniform over all attributes.
_K_WEIGHTS = np.array([0.06, 0.14, 0.2, 0.2, 0.15, 0.12, 0.08, 0.05])


def _jsonkey(v) -> str:
    return "true" if v is True else "false" if v is False else str(v)


def synonyms() -> dict[str, dict[str, list[str]]]:
    """Every phrase a caption may use for each attribute value (JSON-ready)."""
    out: dict[str, dict[str, list[str]]] = {a: {_jsonkey(v): [] for v in vals} for a, vals in ATTRIBUTES.items()}

    def add(attr, value, phrases):
        lst = out[attr][_jsonkey(value)]
        lst.extend(p for p in phrases if p not in lst)

    for attr, d in CONCEPTS.items():
        for v, ps in d.items():
            add(attr, v, ps)
    for v in ("man", "woman"):
        add("presentation", v, PERSON[v] + [GENDER_ADJ[v]])
    for v, ps in ROLE_NOUNS.items():
        add("role", v, ps + [f"dressed as a {ps[0]}"])
    add("role", "none", ROLE_NONE)
    for v in EXPRESSION_ADJ:
        add("expression", v, EXPRESSION_ADJ[v] + EXPRESSION_WITH[v])
    add("horror", True, HORROR_ADJ)
    for v, ps in HAIR_STYLE_WORD.items():
        add("hair_style", v, [f"{p} hair" for p in ps])
    add("hair_style", "bald", BALD_WITH)
    for v, ps in HAIR_COLOR_WORD.items():
        add("hair_color", v, [f"{p} hair" for p in ps] + [f"{p} beard" for p in ps] + HAIR_COLOR_ADJ[v])
    for v, ps in SKIN_WITH.items():
        add("skin", v, ps)
    add("glasses", True, GLASSES_WITH)
    add("hat", True, sorted({w for ws in HAT_WORDS.values() for w in ws}) + ["wearing a hat"])
    add("makeup", True, MAKEUP_WITH)
    add("beard", True, ["with a beard", "with a goatee"])
    for attr, ps in NEGATIONS.items():
        add(attr, False, ps)
    return out


SYNONYMS: dict[str, dict[str, list[str]]] = synonyms()


def hair_color_visible(face: Face) -> bool:
    """Hair colour shows unless the head is bald and beardless."""
    return face.hair_style != "bald" or face.beard


@dataclass
class CaptionPlan:
    """The random choices of one caption, independent of the attribute values (so two faces can share it)."""

    kind: str  # "empty" | "concept" | "full"
    attrs: list[str] = field(default_factory=list)  # mentioned attributes, in caption order
    u: dict[str, np.ndarray] = field(default_factory=dict)  # per attribute: uniforms for synonym/form choices
    template: int = 0
    noun_u: float = 0.0
    background: bool = False


def plan_caption(
    face: Face, rng: np.random.Generator, force: Sequence[str] = (), kind: str | None = None
) -> CaptionPlan:
    """Draw the random choices of a caption for ``face``; ``force`` attributes are always mentioned."""
    r = rng.random()
    if kind is None:
        kind = "empty" if r < P_EMPTY else "concept" if r < P_EMPTY + P_CONCEPT else "full"
    u = {a: rng.random(4) for a in ATTRIBUTES}
    template = int(rng.integers(len(TEMPLATES)))
    noun_u = float(rng.random())
    background = bool(rng.random() < 0.1)
    if kind == "empty":
        return CaptionPlan("empty")
    # Every choice below is independent of the face's values (see the module docstring).
    if kind == "concept":
        names = list(ATTRIBUTES)
        return CaptionPlan("concept", [names[int(rng.integers(len(names)))]], u)
    names = [a for a in ATTRIBUTES if a not in force]
    k = int(rng.choice(len(_K_WEIGHTS), p=_K_WEIGHTS / _K_WEIGHTS.sum()))
    k = max(0, min(k - len(force), len(names)))
    chosen = list(rng.choice(len(names), size=k, replace=False)) if k else []
    attrs = list(force) + [names[i] for i in chosen]
    attrs = [attrs[i] for i in rng.permutation(len(attrs))]
    return CaptionPlan("full", attrs, u, template, noun_u, background)


def _pick(options: Sequence[str], u: float) -> str:
    return options[min(int(u * len(options)), len(options) - 1)]


def _concept_phrases(face: Face, attr: str) -> list[str]:
    """The short forms of ``attr``'s value: a concept phrase, a negation for a false binary attribute,
    and the bald head's own phrases where the hair colour cannot be seen."""
    if attr == "hair_color" and not hair_color_visible(face):
        return CONCEPTS["hair_style"]["bald"]
    value = getattr(face, attr)
    if attr in BINARY and not value:
        return NEGATIONS[attr]
    if attr == "role" and value == "none":
        return ROLE_NONE
    return CONCEPTS[attr][value]


def realize(plan: CaptionPlan, face: Face) -> str:
    """Turn a plan into the caption text for ``face``."""
    if plan.kind == "empty":
        return ""
    if plan.kind == "concept":
        phrases = _concept_phrases(face, plan.attrs[0])
        return _pick(phrases, plan.u[plan.attrs[0]][0]) if phrases else ""
    return _full(plan, face)


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _full(plan: CaptionPlan, f: Face) -> str:
    m = list(plan.attrs)
    u = plan.u
    adjectives: list[str] = []
    phrases: list[str] = []
    hair_done = False
    skip: set[str] = set()
    for a in m:
        if a in skip:
            continue
        ua = u[a]
        v = getattr(f, a)
        if (
            a in ("presentation", "role", "horror")
            and not (a == "role" and v == "none")
            and not (a == "horror" and not v)
        ):
            continue  # part of the noun, below
        if a in BINARY and not v:
            neg = _pick(NEGATIONS[a], ua[0])
            (adjectives if neg in ("clean-shaven", "bareheaded") else phrases).append(neg)
        elif a == "role":
            phrases.append(_pick(ROLE_NONE, ua[0]))
        elif a == "expression":
            if ua[1] < 0.5:
                adjectives.append(_pick(EXPRESSION_ADJ[v], ua[0]))
            else:
                phrases.append(_pick(EXPRESSION_WITH[v], ua[0]))
        elif a == "skin":
            phrases.append(_pick(SKIN_WITH[v], ua[0]))
        elif a in ("hair_style", "hair_color"):
            if hair_done:
                continue
            hair_done = True
            style = f.hair_style if "hair_style" in m else None
            color = f.hair_color if ("hair_color" in m and hair_color_visible(f)) else None
            if style is None and color is None:  # the colour of hair that is not there: say the head is bald
                style = "bald"
            uc = u["hair_color"]
            if style == "bald" or (style is None and f.hair_style == "bald"):
                if style == "bald":
                    if u["hair_style"][1] < 0.5:
                        adjectives.append("bald")
                    else:
                        phrases.append(_pick(BALD_WITH, u["hair_style"][0]))
                if color is not None:  # bald but bearded: the colour is the beard's
                    phrases.append(f"with a {_pick(HAIR_COLOR_WORD[color], uc[0])} beard")
                    skip.add("beard")
            elif style is not None or color is not None:
                if style is None and uc[1] < 0.3:
                    adjectives.append(_pick(HAIR_COLOR_ADJ[color], uc[0]))
                else:
                    words = ([_pick(HAIR_STYLE_WORD[style], u["hair_style"][0])] if style else []) + (
                        [_pick(HAIR_COLOR_WORD[color], uc[0])] if color else []
                    )
                    phrases.append("with " + " ".join(words) + " hair")
        elif a == "bangs":
            phrases.append(_pick(["with bangs", "with a fringe"], ua[0]))
        elif a == "glasses":
            if ua[1] < 0.25:
                phrases.append(f"with {f.glasses_style} glasses")
            elif ua[1] < 0.4:
                phrases.append(f"in {f.glasses_color} glasses")
            else:
                phrases.append(_pick(GLASSES_WITH, ua[0]))
        elif a == "beard":
            if ua[1] < 0.3:
                adjectives.append("bearded")
            elif f.beard_style == "goatee" and ua[1] < 0.5:
                phrases.append("with a goatee")
            else:
                phrases.append("with a beard")
        elif a == "hat":
            word = _pick(HAT_WORDS[f.hat_style], ua[0])
            if ua[1] < 0.4:
                phrases.append(f"wearing {_article(f.hat_color)} {f.hat_color} {word}")
            else:
                phrases.append(_pick(["wearing", "with", "in"], ua[2]) + f" {_article(word)} {word}")
        elif a == "makeup":
            phrases.append(_pick(MAKEUP_WITH, ua[0]))

    # the noun: role > presentation > neutral; horror as the adjective next to it
    noun_words: list[str] = []
    if "horror" in m and f.horror:
        noun_words.append(_pick(HORROR_ADJ, u["horror"][0]))
    pres = "presentation" in m
    if "role" in m and f.role != "none":
        role_word = _pick(ROLE_NOUNS[f.role], u["role"][0])
        if pres and u["presentation"][1] < 0.5:
            noun_words += [_pick(PERSON[f.presentation], u["presentation"][0])]
            phrases.insert(0, f"dressed as {_article(role_word)} {role_word}")
        else:
            noun_words += ([GENDER_ADJ[f.presentation]] if pres else []) + [role_word]
    elif pres:
        noun_words.append(_pick(PERSON[f.presentation], u["presentation"][0]))
    elif noun_words:  # "a zombie"
        noun_words = ["zombie" if noun_words[0] == "zombie" else "undead " + _pick(NEUTRAL_NOUNS, plan.noun_u)]
    else:
        nouns = [n for n in NEUTRAL_NOUNS if n != "face"] if "face of" in TEMPLATES[plan.template] else NEUTRAL_NOUNS
        noun_words.append(_pick(nouns, plan.noun_u))
    head = " ".join(adjectives + noun_words)
    np_ = f"{_article(head)} {head}"
    for i in range(len(phrases) - 1, 0, -1):  # "with a smile, long hair and olive skin"
        if phrases[i].startswith("with ") and phrases[i - 1].startswith("with "):
            phrases[i] = phrases[i][5:]
    if phrases:
        np_ += " " + (phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1])
    if plan.background:
        np_ += f" on {_article(_color_name(f.background))} {_color_name(f.background)} background"
    return TEMPLATES[plan.template].format(np_)


def _color_name(rgb: tuple[int, int, int]) -> str:
    import colorsys

    h, _, _ = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
    for limit, name in COLOR_HUES:
        if h < limit:
            return name
    return "red"


def caption(face: Face, rng: np.random.Generator) -> str:
    """A caption for ``face`` (empty, concept-only or full), deterministic given ``rng``."""
    return realize(plan_caption(face, rng), face)


# ------------------------------------------------------------------------------------------- parsing
def _alts(words: Sequence[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_COLOR_WORDS = {w: v for v, ws in HAIR_COLOR_WORD.items() for w in ws}
_RULES: list[tuple[re.Pattern, str, object]] = []


def _rule(pattern: str, attr: str, value: object) -> None:
    _RULES.append((re.compile(rf"(?<![\w-])(?:{pattern})(?![\w-])"), attr, value))


for _a, _ps in NEGATIONS.items():
    _rule(_alts(_ps + [f"no {_a}"]), _a, False)
for _p, _v in sorted(((p, v) for v, ps in CONCEPTS["skin"].items() for p in ps), key=lambda t: -len(t[0])):
    _rule(re.escape(_p), "skin", _v)
_rule("(" + _alts(list(_COLOR_WORDS)) + r")(?: hair|-haired| beard)", "hair_color", None)
for _v, _ps in HAIR_COLOR_ADJ.items():
    if [p for p in _ps if "-" not in p]:
        _rule(_alts([p for p in _ps if "-" not in p]), "hair_color", _v)
for _v in ("short", "long", "curly"):
    _rule(_v, "hair_style", _v)
_rule("bald|shaved head", "hair_style", "bald")
_rule("bangs|fringe", "bangs", True)
_rule("glasses|eyeglasses|spectacles", "glasses", True)
_rule("beard|bearded|goatee", "beard", True)
_rule("hat|cap|beanie|fedora", "hat", True)
_rule("makeup|lipstick|eye shadow", "makeup", True)
for _v in EXPRESSION_ADJ:
    _rule(
        _alts(EXPRESSION_ADJ[_v] + CONCEPTS["expression"][_v] + [p.split(" ", 2)[-1] for p in EXPRESSION_WITH[_v]]),
        "expression",
        _v,
    )
for _v, _ps in ROLE_NOUNS.items():
    _rule(_alts(_ps), "role", _v)
_rule(_alts(ROLE_NONE), "role", "none")
_rule(_alts(HORROR_ADJ), "horror", True)
_rule("woman|lady|female", "presentation", "woman")
_rule("man|guy|male", "presentation", "man")


def parse_caption(text: str) -> dict[str, set]:
    """Read back the attribute values a caption states: ``{attribute: {values}}`` (usually one value each).

    Matching is by phrase, longest and negated phrases first, so ``"without glasses"`` reads as
    ``glasses: {False}`` and ``"a red cap"`` says nothing about the hair colour.
    """
    s = " " + text.lower() + " "
    found: dict[str, set] = {}
    for pat, attr, value in _RULES:
        for mt in pat.finditer(s):
            v = _COLOR_WORDS[mt.group(1)] if value is None else value
            found.setdefault(attr, set()).add(v)
        s = pat.sub(" | ", s)
    return found
