"""Latent blending (``segakit.editing.blend``): by hand, and on a stub U-Net whose prediction couples the pixels
(a share of the latent's spatial mean), so that a masked edit alone lets the pixels outside its mask drift and the
blend is what holds them: they must come back as the inversion's input, exactly."""

from types import SimpleNamespace

import pytest
import torch
from test_onthefly_mask import CONFIG, PATTERN, SHAPE  # the same schedule, shape and pattern as the mask's test

from segakit.core.conditioning import Conditioning
from segakit.core.errors import UserError
from segakit.core.inversion import EditFriendlyInversion, ddpm_invert
from segakit.editing.blend import blend, dilate, grow
from segakit.editing.direction import EditDirection
from segakit.editing.onthefly import edit_on_ddpm_inversion
from segakit.editing.params import EditParams


def coupled_unet(x, t, encoder_hidden_states, **_):
    """PATTERN times the embedding's mean, plus a tenth of each row's spatial mean: every pixel sees every other."""
    scale = encoder_hidden_states.mean(dim=(1, 2)).view(-1, 1, 1, 1)
    return SimpleNamespace(sample=PATTERN.expand(len(x), -1, -1, -1) * scale + 0.1 * x.mean(dim=(2, 3), keepdim=True))


def test_blend_and_grow_by_hand():
    x, target = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]), torch.tensor([[[[10.0, 20.0], [30.0, 40.0]]]])
    region = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    assert torch.equal(blend(x, target, region), torch.tensor([[[[1.0, 20.0], [30.0, 4.0]]]]))
    assert torch.equal(blend(x, target, torch.ones_like(region)), x)
    assert torch.equal(grow(None, region), region)
    assert torch.equal(
        grow(region, torch.tensor([[[[0.0, 1.0], [0.0, 0.0]]]])), torch.tensor([[[[1.0, 1.0], [0.0, 1.0]]]])
    )


def _inversion(steps=5):
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(SHAPE, generator=gen)
    source = Conditioning(torch.zeros(1, 3, 2))
    return x0, source, ddpm_invert(coupled_unet, CONFIG, x0, source, source, steps, 1.0, 0.0, gen)


def _edit(inversion, source, q, blend_mode, strength=1.0, dilate_by=0):
    direction = EditDirection(torch.full((1, 3, 2), strength))
    return edit_on_ddpm_inversion(coupled_unet, CONFIG, inversion, source, direction, skip=0.0, guidance_scale=5.0,
                                  mask=q, blend=blend_mode, blend_dilate=dilate_by)  # fmt: skip


def test_the_inversion_stores_where_each_step_lands():
    x0, source, inversion = _inversion()
    assert inversion.targets.shape == (5, *SHAPE)
    assert torch.allclose(inversion.targets[-1], x0, atol=1e-5)
    assert torch.allclose(_edit(inversion, source, 0.0, False, 0.0), x0, atol=1e-5)


@pytest.mark.parametrize("q", [0.75, 0.95])
def test_blending_holds_the_pixels_outside_the_edit_on_the_input(q):
    """The stub's change is PATTERN at every step, so every step's mask is the same: |PATTERN| summed over channels
    at its q quantile. Masked alone, the pixels outside drift (through the spatial mean); blended, they are x0's."""
    x0, source, inversion = _inversion()
    energy = PATTERN.abs().sum(1)[0]
    keep = energy >= torch.quantile(energy.flatten(), q)
    masked, blended = _edit(inversion, source, q, False), _edit(inversion, source, q, True)
    assert (masked[..., ~keep] - x0[..., ~keep]).abs().max() > 1e-4  # the drift blending removes
    assert torch.equal(blended[..., ~keep], inversion.targets[-1][..., ~keep])
    assert (blended[..., keep] - x0[..., keep]).abs().sum(0).gt(1e-3).all()  # the edit itself still lands


def test_blending_needs_the_trajectory():
    _, source, inversion = _inversion()
    bare = EditFriendlyInversion(inversion.latents, inversion.noises, inversion.timesteps, inversion.num_train_steps)
    with pytest.raises(ValueError, match="trajectory"):
        _edit(bare, source, 0.9, True)


def test_edit_params_refuse_a_blend_without_a_mask():
    with pytest.raises(UserError, match="blend needs a masked edit: method sega"):
        EditParams("give her glasses", inversion="ddpm", blend=True).validate()
    with pytest.raises(UserError, match="blend needs a masked edit"):
        EditParams("give her glasses", blend=True).validate()  # the paper's DDIM recipe has no mask
    EditParams("give her glasses", inversion="ddpm", mask=0.9, blend=True).validate()
    EditParams("give her glasses", method="sega", concepts=["+glasses"], blend=True).validate()


def test_dilate_by_hand():
    """A single pixel grows to the (2r+1)-square around it, clipped at the border; 0 leaves the mask alone."""
    mask = torch.zeros(1, 1, 5, 5)
    mask[0, 0, 0, 2] = 1.0
    assert torch.equal(dilate(mask, 0), mask)
    grown = dilate(mask, 1)[0, 0]
    assert grown[:2, 1:4].min() == 1 and grown.sum() == 6  # rows 0-1, columns 1-3
    assert dilate(mask, 2)[0, 0].sum() == 15  # rows 0-2, columns 0-4


def test_a_dilated_blend_frees_the_ring_around_the_mask():
    """With dilation 1, the pixels next to the mask are no longer held on the input; the far ones still are."""
    x0, source, inversion = _inversion()
    q = 0.95
    energy = PATTERN.abs().sum(1)[0]
    keep = energy >= torch.quantile(energy.flatten(), q)
    ring = dilate(keep[None, None].float(), 1)[0, 0].bool()
    assert (~ring).any() and (ring & ~keep).any()
    plain, grown = _edit(inversion, source, q, True), _edit(inversion, source, q, True, dilate_by=1)
    assert torch.equal(grown[..., ~ring], inversion.targets[-1][..., ~ring])
    assert torch.equal(plain[..., ring & ~keep], inversion.targets[-1][..., ring & ~keep])
    assert (grown[..., ring & ~keep] - x0[..., ring & ~keep]).abs().max() > 1e-4  # free to drift with the edit


def test_edit_params_check_the_blend_dilation():
    from segakit.core.errors import spelling

    with spelling("cli"), pytest.raises(UserError, match="--blend-dilate 2 grows the blend's masks; it needs --blend"):
        EditParams("give her glasses", method="sega", concepts=["+glasses"], blend_dilate=2).validate()
    with pytest.raises(UserError, match="blend_dilate 9 is not a whole number of latent pixels from 0 to 8"):
        EditParams("give her glasses", method="sega", concepts=["+glasses"], blend=True, blend_dilate=9).validate()
    EditParams("give her glasses", method="sega", concepts=["+glasses"], blend=True, blend_dilate=1).validate()
