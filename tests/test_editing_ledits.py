"""SEGA on an edit-friendly inversion (LEDITS++'s recipe): masks by hand, exact reconstruction, edits inside masks."""

import pytest
import torch
from tiny_models import sd_components

from segakit.core.conditioning import Conditioning, encode_sd
from segakit.core.inversion import ddpm_invert
from segakit.editing.ledits import (
    ConceptEdit,
    concept_tokens,
    gaussian_smooth,
    noise_mask,
    quantile_mask,
    sega_on_inversion,
)


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
    inv = ddpm_invert(
        c["unet"], c["scheduler"].config, x0, source, uncond, 5, 3.5, 0.15, torch.Generator().manual_seed(1)
    )
    tokens = [concept_tokens(c["tokenizer"], "glasses")]
    with torch.no_grad():
        same = sega_on_inversion(c["unet"], c["scheduler"].config, inv, uncond, enc(["glasses"]), [ConceptEdit("glasses", scale=0.0)],
                                 tokens, 0.15, source, 3.5)  # fmt: skip
        moved = sega_on_inversion(c["unet"], c["scheduler"].config, inv, uncond, enc(["glasses"]), [ConceptEdit("glasses", scale=50.0, threshold=0.5)],
                                  tokens, 0.15, source, 3.5)  # fmt: skip
    assert float((same - x0).abs().max()) <= 1e-4
    assert float((moved - x0).abs().max()) > 1e-2
    one = ddpm_invert(
        c["unet"], c["scheduler"].config, x0, source, uncond, 1, 3.5, 0.0, torch.Generator().manual_seed(1)
    )
    with (
        torch.no_grad()
    ):  # one step: the masked guidance lands on the latent as it is, so outside the mask nothing moves
        moved = sega_on_inversion(c["unet"], c["scheduler"].config, one, uncond, enc(["glasses"]), [ConceptEdit("glasses", scale=50.0, threshold=0.5)],
                                  tokens, 0.0, source, 3.5)  # fmt: skip
    changed = (moved - x0).abs().amax(1)  # (1, 16, 16)
    assert float(changed.max()) > 1e-2 and 0.2 < float((changed < 1e-5).float().mean()) < 1.0


def _three_level_unet():
    """A small SD-shaped U-Net with cross-attention at a quarter of the latent size, where LEDITS++ reads its masks."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(3)
    return UNet2DConditionModel(
        block_out_channels=(32, 32, 64), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
        attention_head_dim=8, norm_num_groups=32,
    ).eval()  # fmt: skip


def _reference(tmp_path):
    """diffusers' LEditsPPPipelineStableDiffusion (0.42) on small random components, an image inverted by it (6 steps,
    skip 0.15), the same inversion as segakit's, two concepts (one added, one removed) and their mask token counts."""
    from diffusers import LEditsPPPipelineStableDiffusion

    from segakit.core.inversion import EditFriendlyInversion
    from segakit.eval.editing_study.peer import IntegerTimestepsDDIM

    c = dict(sd_components(tmp_path), unet=_three_level_unet())
    for m in (c["unet"], c["vae"], c["text_encoder"]):
        m.requires_grad_(False)
    ref = LEditsPPPipelineStableDiffusion(**dict(c, scheduler=IntegerTimestepsDDIM.from_config(c["scheduler"].config)),
                                          safety_checker=None, feature_extractor=None, requires_safety_checker=False)  # fmt: skip
    ref.set_progress_bar_config(disable=True)
    steps, skip = 6, 0.15
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    ref.invert(
        image, source_prompt="", num_inversion_steps=steps, skip=skip, generator=torch.Generator().manual_seed(7)
    )
    edits = [ConceptEdit.parse(s, scale=6.0, threshold=0.8) for s in ["+glasses", "-a beard"]]
    inv = EditFriendlyInversion(ref.init_latents, ref.zs, ref.inversion_steps, int(steps * (1 + skip)))
    tokens = [concept_tokens(c["tokenizer"], e.concept) for e in edits]
    return c, ref, inv, skip, edits, tokens


def _reference_edit(ref, edits, **flags):
    return ref(editing_prompt=[e.concept for e in edits], reverse_editing_direction=[e.reverse for e in edits],
               edit_guidance_scale=[e.scale for e in edits], edit_threshold=[e.threshold for e in edits],
               output_type="latent", **flags).images  # fmt: skip


def _ours(c, inv, skip, edits, tokens, masks="intersect"):
    enc = lambda texts: Conditioning(encode_sd(c["tokenizer"], c["text_encoder"], texts, torch.device("cpu")))  # noqa: E731
    with torch.no_grad():
        return sega_on_inversion(c["unet"], c["scheduler"].config, inv, enc([""]), enc([e.concept for e in edits]), edits, tokens,
                                 skip, masks=masks)  # fmt: skip


def test_edit_matches_diffusers_ledits_pp(tmp_path):
    """segakit's masked SEGA sampling against diffusers' LEditsPPPipelineStableDiffusion (0.42) on the same
    edit-friendly inversion: one concept added, one removed, both mask regimes (attention only above t = 800, the
    intersection below), the default mask tokens ("all", as the reference computes them). Tolerance 1e-4."""
    c, ref, inv, skip, edits, tokens = _reference(tmp_path)
    expected = _reference_edit(ref, edits)
    ours = _ours(c, inv, skip, edits, tokens)
    assert list(ref.inversion_steps)[0] > 800 >= list(ref.inversion_steps)[-1]  # both mask regimes were used
    assert float((ours - expected).abs().max()) <= 1e-4
    assert float((ours - ref.init_latents).abs().max()) > 1e-2  # and the edit did something
    literal = [concept_tokens(c["tokenizer"], e.concept, "concept") for e in edits]
    assert tokens == [c["tokenizer"].model_max_length - 2] * 2 and all(0 < n < tokens[0] for n in literal)
    # the paper's reading (the concept's own tokens) makes other masks: not the reference's edit
    other = _ours(c, inv, skip, edits, literal)
    assert float((other - expected).abs().max()) > 1e-3


@pytest.mark.parametrize("masks", ["attention", "noise"])
def test_other_mask_regimes_match_diffusers_flags(tmp_path, masks):
    """``masks="attention"`` is diffusers' LEDITS++ with ``use_cross_attn_mask=True, use_intersect_mask=False``;
    ``"noise"`` (SEGA's own quantile mask) is both flags off. Tolerance 1e-4; each differs from the default's edit."""
    c, ref, inv, skip, edits, tokens = _reference(tmp_path)
    expected = _reference_edit(ref, edits, use_cross_attn_mask=masks == "attention", use_intersect_mask=False)
    ours, default = _ours(c, inv, skip, edits, tokens, masks), _ours(c, inv, skip, edits, tokens)
    assert float((ours - expected).abs().max()) <= 1e-4
    assert float((ours - default).abs().max()) > 1e-3
    with pytest.raises(ValueError, match="masks 'both' is not one of intersect, attention, noise"):
        _ours(c, inv, skip, edits, tokens, "both")


def test_concept_mask_regimes_by_hand():
    """The noise regime ignores attention; the intersection applies the noise mask from t = 800 down only."""
    from segakit.editing.ledits import concept_mask

    i, j = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    g = (i + j).expand(1, 4, 4, 4)  # the guidance grows towards the bottom right, largest at (3, 3)
    maps = torch.zeros(1, 1, 4, 3)  # a 2 x 2 attention grid, three tokens; the concept token attends the top left
    maps[0, 0, 0, 1] = 1.0
    noise = concept_mask("noise", g, [], 1, 0.95, 500)
    assert noise[0, 0, 3, 3] == 1 and noise.sum() == 1
    attention = concept_mask("attention", g, [maps], 1, 0.7, 500)
    assert attention[0, 0, :2, :2].min() == 1 and attention.sum() == 4
    assert concept_mask("intersect", g, [maps], 1, 0.7, 900).equal(attention)  # above 800: the attention mask alone
    assert concept_mask("intersect", g, [maps], 1, 0.7, 500).sum() == 0  # below: the intersection (disjoint here)
