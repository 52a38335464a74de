"""Cross-attention capture (segakit.core.attention) on small random SD 1.x, SD 2.x and SDXL-shaped U-Nets."""

import pytest
import torch
from tiny_models import sd_components, sdxl_components

from segakit.core.attention import CrossAttentionCapture, cross_attention_layers


def _inputs(unet, rows=2):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(rows, 4, 16, 16, generator=g)
    ctx = torch.randn(rows, 16, unet.config.cross_attention_dim, generator=g)
    kwargs = {"encoder_hidden_states": ctx}
    if unet.config.addition_embed_type == "text_time":
        kwargs["added_cond_kwargs"] = {
            "text_embeds": torch.randn(rows, 32, generator=g),
            "time_ids": torch.randn(rows, 6, generator=g),
        }
    return x, kwargs


@pytest.mark.parametrize("kind", ["sd1", "sd2", "sdxl"])
def test_every_cross_attention_layer_is_captured_and_outputs_are_unchanged(tmp_path, kind):
    c = sdxl_components(tmp_path) if kind == "sdxl" else sd_components(tmp_path, v_prediction=kind == "sd2")
    unet = c["unet"]
    expected = [n for n, m in unet.named_modules() if type(m).__name__ == "Attention" and n.endswith("attn2")]
    assert cross_attention_layers(unet) == expected and expected
    x, kwargs = _inputs(unet)
    with torch.no_grad():
        plain = unet(x, 10, **kwargs).sample
        before = dict(unet.attn_processors)
        with CrossAttentionCapture(unet) as cap:
            cap.record(0, reference=True)
            captured = unet(x, 10, **kwargs).sample
        assert {k: type(v) for k, v in unet.attn_processors.items()} == {
            k: type(v) for k, v in before.items()
        }  # restored
    assert float((captured - plain).abs().max()) <= 1e-5
    assert sorted(cap.reference) == sorted((0, n) for n in expected)
    for name, probs in cap.reference.items():
        heads = unet.get_submodule(name[1]).heads
        assert probs.shape[0] == 2 * heads and probs.shape[2] == 16
        assert torch.allclose(probs.sum(-1), torch.ones(()), atol=1e-5)  # rows are distributions over tokens


def test_match_loss_is_zero_on_the_reference_and_pulls_towards_it(tmp_path):
    unet = sd_components(tmp_path)["unet"]
    x, kwargs = _inputs(unet)
    with CrossAttentionCapture(unet) as cap:
        with torch.no_grad():
            cap.record(3, reference=True)
            unet(x, 10, **kwargs)
            cap.match(3)
            unet(x, 10, **kwargs)
        assert float(cap.loss) <= 1e-10
        moved = (x + 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).requires_grad_(True)
        cap.match(3)
        unet(moved, 10, **kwargs)
        first = float(cap.loss.detach())
        cap.loss.backward()
        stepped = (moved - 0.5 * moved.grad / moved.grad.abs().max()).detach()
        with torch.no_grad():
            cap.match(3)
            unet(stepped, 10, **kwargs)
        assert first > 0 and float(cap.loss) < first
        with torch.no_grad():
            cap.record(0)
            unet(x, 10, **kwargs)
        token_maps = cap.token_maps(rows=2)
    assert all(v.shape[0] == 2 and v.ndim == 4 for v in token_maps.values()) and token_maps


def test_cross_attention_step_zero_is_plain_guided_sampling(tmp_path):
    """``xa_guidance=0`` skips the matching pass (no backward, no losses) and gives what a vanishing step gives."""
    from segakit.core.conditioning import Conditioning, encode_sd
    from segakit.editing.direction import TextModels, edit_direction
    from segakit.editing.onthefly import edit_with_cross_attention_guidance

    c = sd_components(tmp_path)
    for m in (c["unet"], c["text_encoder"]):
        m.requires_grad_(False)
    source = Conditioning(encode_sd(c["tokenizer"], c["text_encoder"], ["a face"], torch.device("cpu")))
    direction = edit_direction(TextModels(c["tokenizer"], c["text_encoder"]), ["a face"], ["a face with glasses"])
    x_t = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    run = lambda xa: edit_with_cross_attention_guidance(
        c["unet"], c["scheduler"].config, x_t, source, source, direction, 4, xa_guidance=xa
    )  # noqa: E731
    off, tiny, on = run(0.0), run(1e-9), run(5.0)
    assert off.losses == [] and len(tiny.losses) == 4
    assert float((off.latents - tiny.latents).abs().max()) <= 1e-5
    assert float((off.latents - on.latents).abs().max()) > 1e-4  # a real step moves the result
    assert torch.equal(off.reconstruction, on.reconstruction)  # the reference pass does not depend on the step
