"""The SEGA math against hand-computed tensors, torch.quantile, and invariants (hypothesis)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from segakit.core.errors import UserError
from segakit.sega.guidance import Edit, SemanticGuidance, concept_direction, keep_tails, quantile, weighted_sum


def test_concept_direction_by_hand():
    ee = torch.tensor([1.0, 2.0, -1.0])
    e0 = torch.tensor([0.5, 2.5, 0.0])
    assert torch.equal(concept_direction(ee, e0, 2.0, reverse=False), torch.tensor([1.0, -1.0, -2.0]))
    assert torch.equal(concept_direction(ee, e0, 2.0, reverse=True), torch.tensor([-1.0, 1.0, 2.0]))


def test_keep_tails_by_hand():
    # one image, one channel, 2x2: |psi| = 1, 4, 2, 3; the 0.5-quantile of (1,2,3,4) is 2.5
    psi = torch.tensor([[[[1.0, -4.0], [2.0, 3.0]]]])
    out = keep_tails(psi, 0.5)
    assert torch.equal(out, torch.tensor([[[[0.0, -4.0], [0.0, 3.0]]]]))


def test_keep_tails_per_channel_vs_per_image():
    psi = torch.tensor([[[[1.0, 2.0]], [[10.0, 20.0]]]])  # (1, 2, 1, 2)
    per_channel = keep_tails(psi, 0.5)
    per_image = keep_tails(psi, 0.5, over="image")
    assert torch.equal(per_channel, torch.tensor([[[[0.0, 2.0]], [[0.0, 20.0]]]]))
    # over all four values the 0.5-quantile is 6.0: only the second channel survives
    assert torch.equal(per_image, torch.tensor([[[[0.0, 0.0]], [[10.0, 20.0]]]]))


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 300),
    rows=st.integers(1, 4),
    q=st.floats(0.0, 0.999),
    seed=st.integers(0, 2**31 - 1),
)
def test_quantile_equals_torch_quantile_bitwise(n, rows, q, seed):
    x = torch.randn(rows, n, generator=torch.Generator().manual_seed(seed))
    if seed % 3 == 0:
        x = x.round()  # many ties
    assert torch.equal(quantile(x, q, dim=-1), torch.quantile(x, q, dim=-1))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_quantile_half_precision_matches_reference_upcast(dtype):
    # The deprecated pipeline upcasts to float32, takes torch.quantile, and casts back.
    x = torch.randn(2, 4, 1000, generator=torch.Generator().manual_seed(0)).to(dtype)
    for q in (0.0, 0.5, 0.9, 0.95, 0.99):
        expected = torch.quantile(x.float(), q, dim=-1).to(dtype)
        assert torch.equal(quantile(x, q, dim=-1), expected)


def test_quantile_beyond_torch_size_limit():
    x = torch.randn(1, 2**24 + 10, generator=torch.Generator().manual_seed(1))
    with pytest.raises(RuntimeError):
        torch.quantile(x, 0.95, dim=-1)
    # reference: the order statistics from a full sort, interpolated as torch does
    ordered = torch.sort(x, dim=-1).values[0]
    rank = torch.tensor(0.95, dtype=torch.float32) * (x.shape[-1] - 1)
    lo, frac = int(rank), rank - int(rank)
    expected = torch.lerp(ordered[lo], ordered[lo + 1], frac)
    assert torch.equal(quantile(x, 0.95, dim=-1)[0], expected)


@settings(max_examples=50, deadline=None)
@given(q=st.floats(0.0, 0.99), seed=st.integers(0, 10_000))
def test_keep_tails_keeps_at_least_the_upper_share(q, seed):
    psi = torch.randn(2, 3, 5, 7, generator=torch.Generator().manual_seed(seed))
    out = keep_tails(psi, q)
    kept = (out != 0).float().mean(dim=(2, 3))
    # every kept value is the original; at least (1 - q) of each channel survives (ties can keep more)
    assert torch.all((out == 0) | (out == psi))
    assert torch.all(kept >= (1 - q) - 1 / 35 - 1e-6)


def test_weighted_sum_by_hand():
    psis = torch.stack([torch.ones(1, 1, 2, 2), 2 * torch.ones(1, 1, 2, 2)])
    assert torch.allclose(weighted_sum(torch.tensor([0.5, 0.25]), psis), torch.ones(1, 1, 2, 2))


def _estimates(k, shape=(1, 4, 4, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), {i: torch.randn(shape, generator=g) for i in range(k)}


def test_single_edit_warmup_and_momentum_by_hand():
    edit = Edit("x", scale=2.0, threshold=0.0, warmup=1)
    sega = SemanticGuidance([edit], momentum_scale=0.5, momentum_beta=0.25)
    e0, est = _estimates(1)
    psi = 2.0 * (est[0] - e0)
    # step 0: not warmed up -> nothing applied, momentum built from gamma = psi
    assert sega(0, e0, est) is None
    nu = 0.75 * psi
    assert torch.allclose(sega.momentum, nu)
    # step 1: applied gamma = psi + 0.5 nu
    applied = sega(1, e0, est)
    assert torch.allclose(applied, psi + 0.5 * nu)


def test_partial_warmup_normalises_weights_without_momentum():
    edits = [
        Edit("a", scale=1.0, threshold=0.0, warmup=0, weight=3.0),
        Edit("b", scale=1.0, threshold=0.0, warmup=5, weight=1.0),
    ]
    sega = SemanticGuidance(edits, momentum_scale=0.3, momentum_beta=0.4)
    e0, est = _estimates(2)
    applied = sega(0, e0, est)
    assert torch.allclose(applied, est[0] - e0)  # weight 3 normalised to 1, no momentum


def test_cooled_down_concept_leaves_batch_but_momentum_stays():
    edits = [Edit("a", threshold=0.0, warmup=0, cooldown=2)]
    sega = SemanticGuidance(edits, momentum_scale=0.1, momentum_beta=0.4)
    e0, est = _estimates(1)
    assert sega.alive(1) == [0] and sega.alive(2) == []
    sega(0, e0, est)
    sega(1, e0, est)
    nu = sega.momentum.clone()
    applied = sega(2, e0, {})
    assert torch.allclose(applied, 0.1 * nu)


def test_negative_weight_acts_as_zero():
    sega = SemanticGuidance([Edit("a", threshold=0.0, warmup=0, weight=-2.0)], momentum_scale=0.0)
    e0, est = _estimates(1)
    assert torch.equal(sega(0, e0, est), torch.zeros_like(e0))


@pytest.mark.parametrize(
    "kwargs",
    [dict(threshold=1.0), dict(threshold=-0.1), dict(warmup=-1), dict(cooldown=-3), dict(scale=float("nan"))],
)
def test_edit_rejects_bad_values(kwargs):
    with pytest.raises(UserError):
        Edit("glasses", **kwargs)


def test_partial_phase_with_only_cooled_concepts_applies_nothing_instead_of_nan():
    # A is warmed up but already cooled down while B still warms up: the reference divides 0 by 0.
    edits = [Edit("a", threshold=0.0, warmup=0, cooldown=1), Edit("b", threshold=0.0, warmup=3)]
    sega = SemanticGuidance(edits)
    e0, est = _estimates(2)
    sega(0, e0, est)
    applied = sega(1, e0, {1: est[1]})
    assert torch.equal(applied, torch.zeros_like(e0))
