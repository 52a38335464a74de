"""Captions: kinds, synonyms, consistency with the face (property tests), determinism."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from segakit.world.captions import CONCEPTS, SYNONYMS, caption, parse_caption
from segakit.world.schema import ATTRIBUTES, sample_face

SEGA_PROMPTS = [
    "glasses",
    "smile",
    "hat",
    "beard",
    "bald",
    "makeup",
    "gray hair",
    "bangs",
    "curly hair",
    "woman",
    "man",
    "zombie",
]


def _captions(n, seed=9):
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        face = sample_face(rng)
        out.append((face, caption(face, rng)))
    return out


def test_caption_kinds_and_vocabulary():
    caps = [c for _, c in _captions(3000)]
    empty = sum(c == "" for c in caps) / len(caps)
    assert 0.07 < empty < 0.13
    short = sum(0 < len(c.split()) <= 3 for c in caps) / len(caps)
    assert short > 0.2
    counts = Counter(caps)
    for prompt in SEGA_PROMPTS:
        assert counts[prompt] > 0, prompt
    vocab = {w for c in caps for w in re.findall(r"[a-z'-]+", c)}
    assert len(vocab) < 200  # modest: a small tokenizer covers it
    assert len(set(caps)) > 0.5 * len(caps)  # varied


def test_concept_prompts_are_in_distribution():
    concept_forms = {p for d in CONCEPTS.values() for ps in d.values() for p in ps}
    for prompt in SEGA_PROMPTS:
        assert prompt in concept_forms


def test_synonyms_cover_every_value():
    for attr, values in ATTRIBUTES.items():
        for v in values:
            key = "true" if v is True else "false" if v is False else v
            assert SYNONYMS[attr][key], (attr, v)
    assert {"glasses", "eyeglasses", "spectacles"} <= set(SYNONYMS["glasses"]["true"])


def test_unmentioned_attributes_follow_the_prior():
    """What a caption leaves out says nothing about it, so classifier-free guidance cannot skew it:
    among captions that do not mention an attribute, its values keep their prior frequencies."""
    from segakit.world.schema import PRIORS

    caps = _captions(6000, seed=21)
    for attr, prior in PRIORS.items():
        silent = [face.labels()[attr] for face, text in caps if attr not in parse_caption(text)]
        assert len(silent) > 3000, attr
        for value, p in prior.items():
            share = sum(v == value for v in silent) / len(silent)
            assert abs(share - float(p)) < 0.03, (attr, value, share, p)


def test_neutral_prompt_is_a_training_caption():
    caps = Counter(c for _, c in _captions(6000, seed=22))
    assert caps["a face of a person"] > 5


def test_caption_is_deterministic():
    face = sample_face(np.random.default_rng(1))
    assert caption(face, np.random.default_rng(2)) == caption(face, np.random.default_rng(2))


def test_parse_caption_examples():
    assert parse_caption("a smiling woman without glasses wearing a red cap") == {
        "expression": {"smile"},
        "presentation": {"woman"},
        "glasses": {False},
        "hat": {True},
    }
    assert parse_caption("a man with dark brown skin") == {"presentation": {"man"}, "skin": {"dark"}}
    assert parse_caption("a zombie doctor with curly red hair") == {
        "horror": {True},
        "role": {"doctor"},
        "hair_style": {"curly"},
        "hair_color": {"red"},
    }


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_caption_only_states_true_values(seed):
    rng = np.random.default_rng(seed)
    face = sample_face(rng)
    text = caption(face, rng)
    labels = face.labels()
    for attr, values in parse_caption(text).items():
        assert values == {labels[attr]}, (attr, values, labels[attr], text)
