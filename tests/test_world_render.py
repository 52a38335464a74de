"""Renderer: size, determinism (in and across processes), every attribute visibly changes pixels."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import sys

import numpy as np

from segakit.world.dataset import png_bytes, samples
from segakit.world.render import render
from segakit.world.schema import ATTRIBUTES, sample_face

HASH_SCRIPT = """
import hashlib, json
from segakit.world.dataset import png_bytes, samples
print(json.dumps([[hashlib.sha256(png_bytes(s.image)).hexdigest(), s.caption, s.face.labels()] for s in samples(6, seed=11)]))
"""


def _digest(seed=11, n=6):
    return [[hashlib.sha256(png_bytes(s.image)).hexdigest(), s.caption, s.face.labels()] for s in samples(n, seed=seed)]


def test_render_is_64x64_rgb_and_deterministic():
    face = sample_face(np.random.default_rng(0))
    a, b = render(face), render(face)
    assert a.size == (64, 64) and a.mode == "RGB"
    assert png_bytes(a) == png_bytes(b)


def test_same_seed_same_bytes_across_processes():
    import json

    out = subprocess.run([sys.executable, "-c", HASH_SCRIPT], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == json.loads(json.dumps(_digest()))


def test_sample_depends_only_on_seed_and_index():
    full = _digest(seed=11, n=6)
    tail = [
        [hashlib.sha256(png_bytes(s.image)).hexdigest(), s.caption, s.face.labels()]
        for s in samples(2, seed=11, start=4)
    ]
    assert tail == full[4:]
    assert _digest(seed=12, n=6) != full


def test_every_attribute_value_changes_the_thumbnail():
    base = dataclasses.replace(sample_face(np.random.default_rng(3)), hair_style="short", bangs=False, beard=False)
    for attr, values in ATTRIBUTES.items():
        imgs = []
        for v in values:
            face = dataclasses.replace(base, **{attr: v})
            if attr == "hair_color":  # visible on hair
                face = dataclasses.replace(face, hair_style="long")
            imgs.append(np.asarray(render(face)).astype(int))
        for i in range(len(imgs)):
            for j in range(i + 1, len(imgs)):
                diff = np.abs(imgs[i] - imgs[j]).sum(-1) > 30
                assert diff.sum() >= 8, (attr, values[i], values[j], diff.sum())


def test_nuisance_varies():
    faces = [sample_face(np.random.default_rng([1, i])) for i in range(50)]
    assert len({f.background for f in faces}) > 40
    assert len({round(f.rotation) for f in faces}) > 5
    assert len({f.hat_style for f in faces}) == 3
