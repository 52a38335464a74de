"""The training scripts' learning-rate schedules (segakit.train.config.lr_at), on hand-computed values."""

import pytest

from segakit.train.config import lr_at


def test_warmup_is_linear_from_one_step():
    assert lr_at(0, 1.0, 4, 100, "const") == pytest.approx(0.25)
    assert lr_at(3, 1.0, 4, 100, "const") == pytest.approx(1.0)


def test_cosine_ends_at_min_ratio():
    assert lr_at(10, 1.0, 10, 110, "cosine") == pytest.approx(1.0)
    assert lr_at(60, 1.0, 10, 110, "cosine") == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_at(110, 1.0, 10, 110, "cosine") == pytest.approx(0.1)


def test_wsd_is_constant_then_linear_over_the_last_steps():
    # 1000 steps, the last 200 decay: constant through step 799, then linear down to 0.1 at step 1000
    assert lr_at(500, 2.0, 10, 1000, "wsd", decay_steps=200) == 2.0
    assert lr_at(799, 2.0, 10, 1000, "wsd", decay_steps=200) == 2.0
    assert lr_at(800, 2.0, 10, 1000, "wsd", decay_steps=200) == pytest.approx(2.0)
    assert lr_at(900, 2.0, 10, 1000, "wsd", decay_steps=200) == pytest.approx(2.0 * (1 - 0.9 * 0.5))
    assert lr_at(1000, 2.0, 10, 1000, "wsd", decay_steps=200) == pytest.approx(0.2)
    assert lr_at(1200, 2.0, 10, 1000, "wsd", decay_steps=200) == pytest.approx(0.2)


def test_wsd_matches_const_before_its_decay():
    assert all(lr_at(s, 3e-4, 500, 12_000, "wsd", decay_steps=2_500) == lr_at(s, 3e-4, 500, 12_000, "const")
               for s in range(0, 9_500, 97))  # fmt: skip
