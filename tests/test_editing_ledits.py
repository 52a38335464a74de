"""SEGA on an edit-friendly inversion (LEDITS++'s recipe): masks by hand, exact reconstruction, edits inside masks."""

import torch
from tiny_models import sd_components

from segakit.core.conditioning import Conditioning, encode_sd
from segakit.core.inversion import ddpm_invert
from segakit.editing.ledits import ConceptEdit, concept_tokens, gaussian_smooth, noise_mask, quantile_mask, sega_on_inversion


def test_mask_pieces_by_hand():
    one = torch.zeros(1, 5, 5)
    one[0, 2, 2] = 1.0
    smooth = gaussian_smooth(one)
    assert abs(float(smooth.sum()) - 1.0) < 1e-6 and float(smooth[0, 2, 2]) == float(smooth.max())
    assert torch.allclose(gaussian_smooth(torch.ones(2, 4, 4)), torch.ones(2, 4, 4))  # normalised kernel
    values = torch.arange(16.0).reshape(1, 4, 4)
    assert int(quantile_mask(values, 0.9).sum()) == 2  # the top 10% of 16 cells: 14.5 and up
    g = torch.zeros(1, 4, 4, 4)
    g[0, :, 0, 0] = -3.0  # absolute value, summed over channels
    assert noise_mask(g, 0.9)[0, 0, 0, 0] == 1 and noise_mask(g, 0.9).shape == (1, 1, 4, 4)
    assert ConceptEdit.parse("-beard") == ConceptEdit("beard", True) and ConceptEdit.parse("glasses").reverse is False


def test_no_concept_strength_gives_the_image_back_and_a_concept_moves_it(tmp_path):
    c = sd_components(tmp_path)
    enc = lambda texts: Conditioning(encode_sd(c["tokenizer"], c["text_encoder"], texts, torch.device("cpu")))  # noqa: E731
    x0 = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    uncond, source = enc([""]), enc(["a face"])
    inv = ddpm_invert(c["unet"], c["scheduler"].config, x0, source, uncond, 5, 3.5, 0.15, torch.Generator().manual_seed(1))
    tokens = [concept_tokens(c["tokenizer"], "glasses")]
    with torch.no_grad():
        same = sega_on_inversion(c["unet"], c["scheduler"].config, inv, uncond, enc(["glasses"]), [ConceptEdit("glasses", scale=0.0)],
                                 tokens, 0.15, source, 3.5)  # fmt: skip
        moved = sega_on_inversion(c["unet"], c["scheduler"].config, inv, uncond, enc(["glasses"]), [ConceptEdit("glasses", scale=50.0, threshold=0.5)],
                                  tokens, 0.15, source, 3.5)  # fmt: skip
    assert float((same - x0).abs().max()) <= 1e-4
    assert float((moved - x0).abs().max()) > 1e-2
    one = ddpm_invert(c["unet"], c["scheduler"].config, x0, source, uncond, 1, 3.5, 0.0, torch.Generator().manual_seed(1))
    with torch.no_grad():  # one step: the masked guidance lands on the latent as it is, so outside the mask nothing moves
        moved = sega_on_inversion(c["unet"], c["scheduler"].config, one, uncond, enc(["glasses"]), [ConceptEdit("glasses", scale=50.0, threshold=0.5)],
                                  tokens, 0.0, source, 3.5)  # fmt: skip
    changed = (moved - x0).abs().amax(1)  # (1, 16, 16)
    assert float(changed.max()) > 1e-2 and 0.2 < float((changed < 1e-5).float().mean()) < 1.0
