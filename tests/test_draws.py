"""The per-image draws of fair generation (segakit.core.draws): the spread draw's points by hand, its balance over
runs of consecutive seeds (a property test), and the random draw as PNGs written before the spread draw record it."""

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segakit.core.draws import DRAWS, draw_values, pick, spread_point
from segakit.core.errors import UserError

SKIN = ["light", "medium-light", "medium", "medium-dark", "dark"]


def test_spread_points_by_hand():
    assert [spread_point(s) for s in range(8)] == [0, 0.5, 0.25, 0.75, 0.125, 0.625, 0.375, 0.875]
    assert spread_point(6) == 0.375  # 110b -> 0.011b


def test_pick_by_cumulative_shares():
    assert [pick(["a", "b", "c"], [0.2, 0.3, 0.5], u) for u in (0.0, 0.19, 0.2, 0.49, 0.5, 0.999)] == [
        "a",
        "a",
        "b",
        "b",
        "c",
        "c",
    ]


@settings(max_examples=60, deadline=None)
@given(start=st.integers(0, 10**9), half=st.integers(1, 150))
def test_two_equal_values_split_any_even_run_of_seeds_exactly(start, half):
    counts = Counter(draw_values({"man": 0.5, "woman": 0.5}, 2 * half, start))
    assert counts["man"] == counts["woman"] == half


@settings(max_examples=40, deadline=None)
@given(start=st.integers(0, 10**9))
def test_five_values_over_200_seeds_are_each_near_a_fifth(start):
    counts = Counter(draw_values({v: 0.2 for v in SKIN}, 200, start))
    assert all(abs(counts[v] / 200 - 0.2) <= 0.013 for v in SKIN)  # the worst over many starts: 0.0125


@settings(max_examples=40, deadline=None)
@given(start=st.integers(0, 10**6), share=st.sampled_from([0.1, 0.25, 0.3, 0.7]))
def test_unequal_shares_are_met_over_256_aligned_seeds(start, share):
    first = start * 256  # an aligned run of 2^8 seeds: one point in each 1/256 of [0, 1)
    counts = Counter(draw_values({"a": share, "b": 1 - share}, 256, first))
    assert abs(counts["a"] - 256 * share) <= 1


def test_random_draw_is_the_earlier_one_and_bad_draws_are_refused():
    shares = {"man": 0.5, "woman": 0.5}
    assert draw_values(shares, 30, 4, "random") == [
        random.Random(4 + i).choices(["man", "woman"], [0.5, 0.5])[0] for i in range(30)
    ]
    assert draw_values(shares, 5, 0) == draw_values({"woman": 0.5, "man": 0.5}, 5, 0)  # the order shares are written in
    assert set(DRAWS) == {"spread", "random"}
    with pytest.raises(UserError, match="--fair-draw 'even' is not one of spread, random"):
        draw_values(shares, 3, 0, "even")
