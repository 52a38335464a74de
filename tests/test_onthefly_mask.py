"""OnTheFly on a DDPM inversion with LEDITS++'s noise mask (``mask``), on a stub U-Net whose prediction is known:
zero for the source caption, a fixed pattern for the moved one, whatever the latent. Then the edit's change to the
sampled latents can be computed by hand: it stays inside the mask, and without a mask it is everywhere."""

from types import SimpleNamespace

import pytest
import torch

from segakit.core.conditioning import Conditioning
from segakit.core.inversion import EditFriendlyInversion, ddpm_scheduler
from segakit.editing.direction import EditDirection
from segakit.editing.onthefly import edit_on_ddpm_inversion

SHAPE = (1, 4, 8, 8)
CONFIG = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
          "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1}  # fmt: skip
PATTERN = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))


def stub_unet(x, t, encoder_hidden_states, **_):
    """Rows conditioned on a non-zero embedding predict PATTERN times that embedding's mean; zero rows predict 0."""
    scale = encoder_hidden_states.mean(dim=(1, 2)).view(-1, 1, 1, 1)
    return SimpleNamespace(sample=PATTERN.expand(len(x), -1, -1, -1) * scale)


def _edit(mask: float, strength: float) -> torch.Tensor:
    steps = 5
    _, timesteps = ddpm_scheduler(CONFIG, steps, 0.0)
    gen = torch.Generator().manual_seed(0)
    inversion = EditFriendlyInversion(
        torch.randn(SHAPE, generator=gen), torch.randn((steps, *SHAPE), generator=gen), timesteps, steps
    )
    source = Conditioning(torch.zeros(1, 3, 2))
    direction = EditDirection(torch.full((1, 3, 2), strength))
    return edit_on_ddpm_inversion(
        stub_unet, CONFIG, inversion, source, direction, skip=0.0, guidance_scale=5.0, mask=mask
    )


def test_a_zero_direction_changes_nothing_with_or_without_a_mask():
    assert torch.equal(_edit(0.0, 0.0), _edit(0.9, 0.0))


@pytest.mark.parametrize("q", [0.5, 0.75, 0.95])
def test_the_masked_edit_moves_only_the_pixels_the_mask_keeps(q):
    """The stub's change is PATTERN at every step, so the mask is the same at every step: the pixels whose |PATTERN|
    summed over channels reaches its q quantile. There the latents move as unmasked; elsewhere not at all."""
    plain, unmasked, masked = _edit(0.0, 0.0), _edit(0.0, 1.0), _edit(q, 1.0)
    energy = PATTERN.abs().sum(1)[0]
    keep = energy >= torch.quantile(energy.flatten(), q)
    moved = (masked - plain).abs().sum(1)[0] > 1e-6
    assert torch.equal(moved, keep)
    assert torch.allclose(masked[..., keep], unmasked[..., keep], atol=1e-6)
    assert torch.equal(masked[..., ~keep], plain[..., ~keep])
    assert (unmasked - plain).abs().sum(1)[0].gt(1e-6).all()  # no mask: every pixel moves
