"""Edit directions from caption sets on small random SD- and SDXL-shaped text encoders."""

import pytest
import torch
from tiny_models import sd_components, sdxl_components

from segakit.core.conditioning import encode_sd, encode_sdxl
from segakit.core.errors import UserError
from segakit.editing.direction import TextModels, direction_from_embeddings, edit_direction

BEFORE = ["a woman", "a photo of a woman", "a woman with long hair"]
AFTER = ["a woman with glasses", "a photo of a woman wearing glasses"]


def test_sd_direction_is_the_difference_of_caption_means(tmp_path):
    c = sd_components(tmp_path)
    text = TextModels(c["tokenizer"], c["text_encoder"])
    d = edit_direction(text, BEFORE, AFTER)
    seq, dim = c["tokenizer"].model_max_length, c["text_encoder"].config.hidden_size
    assert d.embeds.shape == (1, seq, dim) and d.pooled is None
    with torch.no_grad():
        b = encode_sd(c["tokenizer"], c["text_encoder"], BEFORE, torch.device("cpu"))
        a = encode_sd(c["tokenizer"], c["text_encoder"], AFTER, torch.device("cpu"))
    by_hand = (a[0] + a[1]) / 2 - (b[0] + b[1] + b[2]) / 3
    assert torch.allclose(d.embeds[0], by_hand, atol=1e-6)
    same = edit_direction(text, BEFORE, BEFORE)
    assert float(same.embeds.abs().max()) <= 1e-6
    moved = d.add_to(text.encode(["a woman"]))
    assert torch.allclose(moved.embeds - text.encode(["a woman"]).embeds, d.embeds, atol=1e-6)


def test_sdxl_direction_covers_both_encoders_and_the_pooled_projection(tmp_path):
    c = sdxl_components(tmp_path)
    text = TextModels(
        c["tokenizer"], c["text_encoder"], c["tokenizer_2"], c["text_encoder_2"], sdxl=True, image_size=(32, 32)
    )
    d = edit_direction(text, BEFORE, AFTER)
    dim = c["text_encoder"].config.hidden_size + c["text_encoder_2"].config.hidden_size
    assert d.embeds.shape == (1, c["tokenizer"].model_max_length, dim)
    assert d.pooled.shape == (1, c["text_encoder_2"].config.projection_dim)
    with torch.no_grad():
        eb, pb = encode_sdxl(
            [c["tokenizer"], c["tokenizer_2"]], [c["text_encoder"], c["text_encoder_2"]], BEFORE, torch.device("cpu")
        )
        ea, pa = encode_sdxl(
            [c["tokenizer"], c["tokenizer_2"]], [c["text_encoder"], c["text_encoder_2"]], AFTER, torch.device("cpu")
        )
    assert torch.allclose(d.embeds, ea.mean(0, keepdim=True) - eb.mean(0, keepdim=True), atol=1e-6)
    assert torch.allclose(d.pooled, pa.mean(0, keepdim=True) - pb.mean(0, keepdim=True), atol=1e-6)
    cond = text.encode(["a woman"])
    assert cond.time_ids.tolist() == [[32, 32, 0, 0, 32, 32]]
    moved = d.add_to(cond, 2.0)
    assert torch.allclose(moved.pooled - cond.pooled, 2 * d.pooled, atol=1e-6)


def test_direction_needs_captions_on_both_sides(tmp_path):
    c = sd_components(tmp_path)
    with pytest.raises(UserError, match="at least one caption"):
        edit_direction(TextModels(c["tokenizer"], c["text_encoder"]), [], AFTER)


def test_direction_of_single_rows_is_their_difference():
    from segakit.core.conditioning import Conditioning

    a, b = torch.randn(1, 4, 8), torch.randn(1, 4, 8)
    assert torch.equal(direction_from_embeddings(Conditioning(b), Conditioning(a)).embeds, a - b)
