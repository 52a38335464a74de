"""Schema, priors and face sampling of the faces world."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segakit.core.errors import UserError
from segakit.world.schema import (
    ATTRIBUTES,
    BINARY,
    CONDITIONAL_PRIORS,
    PRIORS,
    Face,
    parse_assignments,
    sample_face,
    schema_dict,
)

DESIGN_VOCABULARY = {
    "presentation": ("man", "woman"),
    "skin": ("light", "medium-light", "medium", "medium-dark", "dark"),
    "hair_style": ("short", "long", "curly", "bald"),
    "hair_color": ("black", "brown", "blond", "red", "gray"),
    "expression": ("smile", "neutral", "frown"),
}


def test_vocabulary_matches_design():
    assert list(ATTRIBUTES) == [
        "presentation",
        "skin",
        "hair_style",
        "hair_color",
        "bangs",
        "glasses",
        "expression",
        "beard",
        "hat",
        "makeup",
        "role",
        "horror",
    ]
    for attr, values in DESIGN_VOCABULARY.items():
        assert ATTRIBUTES[attr] == values
    assert set(BINARY) == {"bangs", "glasses", "beard", "hat", "makeup", "horror"}
    assert ATTRIBUTES["role"][0] == "none" and len(ATTRIBUTES["role"]) >= 5


def test_priors_are_distributions():
    for attr, dist in PRIORS.items():
        assert set(dist) == set(ATTRIBUTES[attr])
        assert sum(dist.values()) == pytest.approx(1.0)
    for attr, cond in CONDITIONAL_PRIORS.items():
        for pres, dist in cond.items():
            assert sum(dist.values()) == pytest.approx(1.0), (attr, pres)


def test_role_bias_is_by_design():
    role = CONDITIONAL_PRIORS["role"]
    p_man_doctor = role["man"]["doctor"] / (role["man"]["doctor"] + role["woman"]["doctor"])
    p_woman_nurse = role["woman"]["nurse"] / (role["man"]["nurse"] + role["woman"]["nurse"])
    assert p_man_doctor >= 0.7 and p_woman_nurse >= 0.85


def test_sampling_follows_priors():
    faces = [sample_face(np.random.default_rng([42, i])) for i in range(4000)]
    for attr in ("presentation", "glasses", "role", "hair_style"):
        counts = Counter(getattr(f, attr) for f in faces)
        for value, p in PRIORS[attr].items():
            assert counts[value] / len(faces) == pytest.approx(p, abs=0.03), (attr, value)
    doctors = [f for f in faces if f.role == "doctor"]
    nurses = [f for f in faces if f.role == "nurse"]
    assert sum(f.presentation == "man" for f in doctors) / len(doctors) > 0.65
    assert sum(f.presentation == "woman" for f in nurses) / len(nurses) > 0.8
    assert not any(f.bangs and f.hair_style == "bald" for f in faces)


def test_pinned_role_keeps_the_bias():
    faces = [sample_face(np.random.default_rng([7, i]), {"role": "nurse"}) for i in range(600)]
    assert all(f.role == "nurse" for f in faces)
    assert sum(f.presentation == "woman" for f in faces) / len(faces) > 0.8


def test_pinning_one_attribute_leaves_the_rest():
    a = sample_face(np.random.default_rng(5))
    b = sample_face(np.random.default_rng(5), {"glasses": not a.glasses})
    assert b.glasses != a.glasses
    assert a.nuisance() == b.nuisance() and a.skin == b.skin and a.expression == b.expression


def test_bad_values_are_user_errors():
    with pytest.raises(UserError, match="role"):
        parse_assignments(["role=astronaut"])
    with pytest.raises(UserError, match="wings"):
        parse_assignments(["wings=true"])
    with pytest.raises(UserError, match="ATTRIBUTE=VALUE"):
        parse_assignments(["glasses"])
    with pytest.raises(UserError, match="bald"):
        sample_face(np.random.default_rng(0), {"bangs": True, "hair_style": "bald"})
    with pytest.raises(UserError):
        Face(glasses="yes")
    assert parse_assignments(["glasses=TRUE,role=doctor"]) == {"glasses": True, "role": "doctor"}


def test_schema_dict_is_json():
    d = json.loads(json.dumps(schema_dict()))
    assert d["attributes"]["glasses"] == [False, True]
    assert d["priors"]["glasses"]["true"] == pytest.approx(0.3)
    assert d["conditional_priors"]["role"]["given"] == "presentation"


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_labels_round_trip(seed):
    face = sample_face(np.random.default_rng(seed))
    labels = face.labels()
    assert list(labels) == list(ATTRIBUTES)
    for attr, value in labels.items():
        assert value in ATTRIBUTES[attr]
        assert isinstance(value, bool) == (attr in BINARY)
    blob = json.loads(json.dumps(face.to_dict()))
    assert Face.from_dict(blob) == face
    assert Face.from_dict(blob).labels() == labels
