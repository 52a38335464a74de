"""What a diffusers user reaches for, on SegaPipeline: LoRA, textual inversion, VAE slicing/tiling, CPU offload,
FreeU, guidance_rescale, callback_on_step_end. Small random components; LoRA and embedding files made here.

Where diffusers' StableDiffusionPipeline has the same feature, SegaPipeline without edits must give its pixels
(the components are shared, so a LoRA loaded through one is seen by both).
"""

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from diffusers.callbacks import PipelineCallback
from tiny_models import make_embedding, make_lora, sd_components, sdxl_components

from segakit import Edit, SegaPipeline
from segakit.core.errors import UserError

TOL = 1e-4
STEPS = 4
KW = dict(num_inference_steps=STEPS, output_type="np")


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _diff(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


def _quiet(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def sd(tmp_path):
    """A fresh pair per test: LoRAs and embeddings change the shared components."""
    c = sd_components(tmp_path / "parts")
    plain = _quiet(
        StableDiffusionPipeline(**c, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    )
    return plain, _quiet(SegaPipeline.from_pipe(plain)), c


# ---- LoRA


def test_lora_loads_scales_fuses_and_unloads_like_diffusers(sd, tmp_path):
    plain, ours, c = sd
    lora = make_lora(c, tmp_path / "style.safetensors", text_encoders=())
    base = ours("a face", **KW, generator=_gen()).images
    ours.load_lora_weights(lora, adapter_name="style")
    with_lora = ours("a face", **KW, generator=_gen()).images
    assert _diff(with_lora, base) > 1e-3
    assert _diff(with_lora, plain("a face", **KW, generator=_gen()).images) <= TOL
    # runtime scale, as diffusers: cross_attention_kwargs={"scale": s}; 0 is the model without the LoRA
    off = dict(cross_attention_kwargs={"scale": 0.0})
    assert _diff(ours("a face", **KW, **off, generator=_gen()).images, base) <= TOL
    ours.set_adapters(["style"], [0.5])
    half = ours("a face", **KW, generator=_gen()).images
    assert _diff(half, plain("a face", **KW, generator=_gen()).images) <= TOL
    assert _diff(half, base) > 1e-4 and _diff(half, with_lora) > 1e-4
    ours.fuse_lora()
    assert _diff(ours("a face", **KW, generator=_gen()).images, half) <= TOL
    ours.unfuse_lora()
    ours.unload_lora_weights()
    assert _diff(ours("a face", **KW, generator=_gen()).images, base) <= TOL


def test_sega_on_top_of_a_lora(sd, tmp_path):
    _, ours, c = sd
    ours.load_lora_weights(make_lora(c, tmp_path / "style.safetensors", text_encoders=()))
    plain = ours("a face", **KW, generator=_gen()).images
    edited = ours("a face", edits=[Edit("glasses", scale=8, warmup=1)], **KW, generator=_gen()).images
    assert _diff(plain, edited) > 1e-3


def test_two_loras_with_weights(sd, tmp_path):
    plain, ours, c = sd
    ours.load_lora_weights(make_lora(c, tmp_path / "a.safetensors", seed=1, text_encoders=()), adapter_name="a")
    ours.load_lora_weights(make_lora(c, tmp_path / "b.safetensors", seed=2, text_encoders=()), adapter_name="b")
    ours.set_adapters(["a", "b"], [1.0, 0.5])
    assert ours.get_active_adapters() == ["a", "b"]
    assert _diff(ours("a face", **KW, generator=_gen()).images, plain("a face", **KW, generator=_gen()).images) <= TOL


def test_text_encoder_lora_matches_diffusers(sd, tmp_path):
    plain, ours, c = sd
    base = ours("a face", **KW, generator=_gen()).images
    ours.load_lora_weights(make_lora(c, tmp_path / "te.safetensors"), adapter_name="te")
    assert getattr(ours.text_encoder, "peft_config", None)
    got = ours("a face", **KW, generator=_gen()).images
    assert _diff(got, plain("a face", **KW, generator=_gen()).images) <= TOL
    # the scale reaches the text encoder too (diffusers scales its LoRA layers while encoding)
    off = dict(cross_attention_kwargs={"scale": 0.0})
    assert _diff(ours("a face", **KW, **off, generator=_gen()).images, base) <= TOL
    half = dict(cross_attention_kwargs={"scale": 0.5})
    assert (
        _diff(
            ours("a face", **KW, **half, generator=_gen()).images,
            plain("a face", **KW, **half, generator=_gen()).images,
        )
        <= TOL
    )
    ours.fuse_lora()
    assert _diff(ours("a face", **KW, generator=_gen()).images, got) <= TOL


def test_a_lora_that_fails_half_way_leaves_no_adapter(sd, tmp_path):
    from safetensors.torch import load_file, save_file

    _, ours, c = sd
    path = make_lora(c, tmp_path / "te.safetensors")
    weights = load_file(str(path))
    key = next(k for k in weights if k.startswith("text_encoder.") and "lora_A" in k)
    weights[key] = torch.zeros(4, 7)  # a text encoder of another width: fails after the U-Net part loaded
    save_file(weights, str(path))
    base = ours("a face", **KW, generator=_gen()).images
    with pytest.raises(UserError, match="could not be loaded"):
        ours.load_lora_weights(path, adapter_name="te")
    assert not getattr(ours.unet, "peft_config", None)
    assert _diff(ours("a face", **KW, generator=_gen()).images, base) <= TOL


def test_bad_lora_files_are_user_errors(sd, tmp_path):
    _, ours, _ = sd
    pickled = tmp_path / "style.ckpt"
    pickled.write_bytes(b"not really")
    with pytest.raises(UserError, match="pickle"):
        ours.load_lora_weights(pickled)
    with pytest.raises(UserError, match="does not exist"):
        ours.load_lora_weights(tmp_path / "missing.safetensors")
    text = tmp_path / "style.txt"
    text.write_text("x")
    with pytest.raises(UserError, match="not a .safetensors file"):
        ours.load_lora_weights(text)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 16)
    with pytest.raises(UserError, match="not a readable .safetensors file"):
        ours.load_lora_weights(broken)
    with pytest.raises(UserError, match="safetensors only"):
        ours.load_lora_weights(tmp_path, use_safetensors=False)


def test_sdxl_lora_goes_through_the_xl_loader(tmp_path):
    c = sdxl_components(tmp_path / "parts")
    plain = _quiet(StableDiffusionXLPipeline(**c))
    ours = _quiet(SegaPipeline.from_pipe(plain))
    assert ours._lora_loadable_modules == ["unet", "text_encoder", "text_encoder_2"]
    base = ours("a face", **KW, generator=_gen()).images
    lora = make_lora(c, tmp_path / "xl.safetensors", text_encoders=("text_encoder", "text_encoder_2"))
    ours.load_lora_weights(lora, adapter_name="xl")
    assert getattr(ours.text_encoder, "peft_config", None) and getattr(ours.text_encoder_2, "peft_config", None)
    got = ours("a face", **KW, generator=_gen()).images
    assert _diff(got, base) > 1e-3
    assert _diff(got, plain("a face", **KW, generator=_gen()).images) <= TOL
    ours.fuse_lora()
    assert _diff(ours("a face", **KW, generator=_gen()).images, got) <= TOL


# ---- textual inversion


@pytest.mark.parametrize("vectors", [1, 3])
def test_textual_inversion_matches_diffusers(sd, tmp_path, vectors):
    plain, ours, c = sd
    base = ours("a face", **KW, generator=_gen()).images
    ours.load_textual_inversion(make_embedding(c["text_encoder"], tmp_path / "toy.safetensors", "<toy>", vectors))
    got = ours("a <toy> face", **KW, generator=_gen()).images
    assert _diff(got, base) > 1e-3
    assert _diff(got, plain("a <toy> face", **KW, generator=_gen()).images) <= TOL
    # the new token works in edit concepts too
    edited = ours("a face", edits=[Edit("<toy>", scale=8, warmup=1)], **KW, generator=_gen()).images
    assert _diff(edited, base) > 1e-3


def test_textual_inversion_refuses_pickles(sd, tmp_path):
    _, ours, _ = sd
    pickled = tmp_path / "toy.bin"
    pickled.write_bytes(b"not really")
    with pytest.raises(UserError, match="pickle"):
        ours.load_textual_inversion(pickled)


def test_sdxl_textual_inversion_in_both_encoders(tmp_path):
    c = sdxl_components(tmp_path / "parts")
    plain = _quiet(StableDiffusionXLPipeline(**c))
    ours = _quiet(SegaPipeline.from_pipe(plain))
    emb1 = make_embedding(c["text_encoder"], tmp_path / "a.safetensors", "<toy>", 2, seed=3)
    emb2 = make_embedding(c["text_encoder_2"], tmp_path / "b.safetensors", "<toy>", 2, seed=4)
    ours.load_textual_inversion(emb1, token="<toy>", text_encoder=ours.text_encoder, tokenizer=ours.tokenizer)
    ours.load_textual_inversion(emb2, token="<toy>", text_encoder=ours.text_encoder_2, tokenizer=ours.tokenizer_2)
    got = ours("a <toy> face", **KW, generator=_gen()).images
    assert _diff(got, plain("a <toy> face", **KW, generator=_gen()).images) <= TOL


def test_sdxl_embedding_file_with_both_encoders(tmp_path):
    """The SDXL embedding layout ({"clip_l", "clip_g"} in one file, token = file name) in one call."""
    from safetensors.torch import save_file

    c = sdxl_components(tmp_path / "parts")
    plain = _quiet(StableDiffusionXLPipeline(**c))
    ours = _quiet(SegaPipeline.from_pipe(plain))
    base = ours("a face", **KW, generator=_gen()).images
    gen = torch.Generator().manual_seed(5)
    dims = [c[n].get_input_embeddings().weight.shape[1] for n in ("text_encoder", "text_encoder_2")]
    save_file(
        {"clip_l": torch.randn(2, dims[0], generator=gen), "clip_g": torch.randn(2, dims[1], generator=gen)},
        str(tmp_path / "toy.safetensors"),
    )
    ours.load_textual_inversion(tmp_path / "toy.safetensors")
    assert "toy" in ours.tokenizer.get_vocab() and "toy" in ours.tokenizer_2.get_vocab()
    got = ours("a toy face", **KW, generator=_gen()).images
    assert _diff(got, base) > 1e-3
    assert _diff(got, plain("a toy face", **KW, generator=_gen()).images) <= TOL


# ---- memory options, FreeU


def test_vae_slicing_and_tiling_keep_the_images(sd):
    _, ours, _ = sd
    kw = dict(num_images_per_prompt=2, **KW)
    base = ours("a face", **kw, generator=[_gen(0), _gen(1)]).images
    ours.enable_vae_slicing()
    ours.enable_vae_tiling()
    assert ours.vae.use_slicing and ours.vae.use_tiling
    assert _diff(ours("a face", **kw, generator=[_gen(0), _gen(1)]).images, base) <= TOL
    ours.disable_vae_slicing()
    ours.disable_vae_tiling()
    assert not ours.vae.use_slicing and not ours.vae.use_tiling


def test_model_cpu_offload(sd):
    pytest.importorskip("accelerate")
    _, ours, _ = sd
    base = ours("a face", editing_prompt="glasses", edit_warmup_steps=1, **KW, generator=_gen()).images
    ours.enable_model_cpu_offload(device="cpu")  # no accelerator here: the hooks still run on the CPU
    assert ours._all_hooks
    got = ours("a face", editing_prompt="glasses", edit_warmup_steps=1, **KW, generator=_gen()).images
    assert _diff(got, base) <= TOL


def test_freeu_matches_diffusers_and_switches_off(sd):
    plain, ours, _ = sd
    base = ours("a face", **KW, generator=_gen()).images
    ours.enable_freeu(s1=0.9, s2=0.2, b1=1.2, b2=1.4)
    got = ours("a face", **KW, generator=_gen()).images
    assert _diff(got, base) > 1e-3
    assert _diff(got, plain("a face", **KW, generator=_gen()).images) <= TOL
    ours.disable_freeu()
    assert _diff(ours("a face", **KW, generator=_gen()).images, base) <= TOL


# ---- guidance_rescale, callbacks


def test_guidance_rescale_matches_diffusers(sd):
    plain, ours, _ = sd
    got = ours("a face", guidance_rescale=0.7, **KW, generator=_gen()).images
    assert _diff(got, plain("a face", guidance_rescale=0.7, **KW, generator=_gen()).images) <= TOL
    assert _diff(got, ours("a face", **KW, generator=_gen()).images) > 1e-4
    with pytest.raises(UserError, match="guidance_rescale"):
        ours("a face", guidance_rescale=1.5, **KW)


def _damp(pipe, step, t, tensors):
    return {"latents": tensors["latents"] * 0.9} if step == 1 else {}


def test_step_callback_matches_diffusers(sd):
    plain, ours, _ = sd
    seen = []

    def record(pipe, step, t, tensors):
        seen.append((step, int(t), tuple(tensors["latents"].shape), tuple(tensors["prompt_embeds"].shape)))
        return _damp(pipe, step, t, tensors)

    inputs = ["latents", "prompt_embeds"]
    got = ours(
        "a face", callback_on_step_end=record, callback_on_step_end_tensor_inputs=inputs, **KW, generator=_gen()
    ).images
    ours_seen, seen[:] = list(seen), []
    expected = plain(
        "a face", callback_on_step_end=record, callback_on_step_end_tensor_inputs=inputs, **KW, generator=_gen()
    ).images
    assert ours_seen == seen and len(seen) == STEPS
    assert _diff(got, expected) <= TOL
    assert _diff(got, ours("a face", **KW, generator=_gen()).images) > 1e-4


def test_step_callback_with_edits_and_embeds(sd):
    _, ours, _ = sd
    edits = [Edit("glasses", scale=6, warmup=1)]
    base = ours("a face", edits=edits, **KW, generator=_gen()).images

    def same_embeds(pipe, step, t, tensors):
        assert pipe.guidance_scale == 7.5 and pipe.do_classifier_free_guidance and pipe.num_timesteps == STEPS
        return {
            "prompt_embeds": tensors["prompt_embeds"].clone(),
            "negative_prompt_embeds": tensors["negative_prompt_embeds"],
        }

    inputs = ["prompt_embeds", "negative_prompt_embeds", "noise_pred"]
    got = ours(
        "a face",
        edits=edits,
        callback_on_step_end=same_embeds,
        callback_on_step_end_tensor_inputs=inputs,
        **KW,
        generator=_gen(),
    ).images
    assert _diff(got, base) <= TOL

    def zero_prompt(pipe, step, t, tensors):
        embeds = tensors["prompt_embeds"].clone()
        embeds[1:] = 0
        return {"prompt_embeds": embeds}

    changed = ours(
        "a face",
        edits=edits,
        callback_on_step_end=zero_prompt,
        callback_on_step_end_tensor_inputs=["prompt_embeds"],
        **KW,
        generator=_gen(),
    ).images
    assert _diff(changed, base) > 1e-4


def test_pipeline_callback_objects_and_interrupt(sd):
    _, ours, _ = sd

    class Damp(PipelineCallback):
        tensor_inputs = ["latents"]

        def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
            return _damp(pipeline, step_index, timestep, callback_kwargs)

    a = ours("a face", callback_on_step_end=Damp(), **KW, generator=_gen()).images
    b = ours("a face", callback_on_step_end=_damp, **KW, generator=_gen()).images
    assert _diff(a, b) <= TOL

    steps = []

    def stop_after_two(pipe, step, t, tensors):
        steps.append(step)
        pipe._interrupt = step == 1
        return {}

    ours("a face", callback_on_step_end=stop_after_two, **KW, generator=_gen())
    assert steps == [0, 1]


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        (dict(callback_on_step_end=_damp, callback_on_step_end_tensor_inputs=["latentz"]), "not available"),
        (dict(callback_on_step_end="nope"), "not callable"),
        (dict(callback_on_step_end=lambda p, i, t, k: {"latents": k["latents"][:0]}), "cannot change the batch"),
        (dict(callback_on_step_end=lambda p, i, t, k: 3), "must return a dict"),
    ],
)
def test_bad_callbacks_are_user_errors(sd, kwargs, needle):
    _, ours, _ = sd
    with pytest.raises(UserError, match=needle):
        ours("a face", **kwargs, **KW, generator=_gen())


# ---- one-file checkpoints


def test_from_single_file_with_a_local_config_folder(tmp_path):
    from ldm_checkpoint import save_ldm_checkpoint

    c = sd_components(tmp_path / "parts")
    plain = _quiet(
        StableDiffusionPipeline(**c, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    )
    plain.save_pretrained(tmp_path / "config", safe_serialization=True)
    for weights in (tmp_path / "config").rglob("*.safetensors"):
        weights.unlink()  # the folder gives configs and tokenizer only: the weights must come from the file
    checkpoint = save_ldm_checkpoint(c, tmp_path / "model.safetensors")
    ours = _quiet(SegaPipeline.from_single_file(checkpoint, config=tmp_path / "config"))
    assert isinstance(ours, SegaPipeline)
    assert _diff(ours("a face", **KW, generator=_gen()).images, plain("a face", **KW, generator=_gen()).images) <= TOL
    edits = dict(editing_prompt="glasses", edit_warmup_steps=1)
    assert (
        _diff(
            ours("a face", **edits, **KW, generator=_gen()).images,
            SegaPipeline.from_pipe(plain)("a face", **edits, **KW, generator=_gen()).images,
        )
        <= TOL
    )


def test_from_single_file_refuses_pickles_and_bad_configs(tmp_path):
    pickled = tmp_path / "model.ckpt"
    pickled.write_bytes(b"not really")
    with pytest.raises(UserError, match="is a pickle checkpoint, which can run code when loaded"):
        SegaPipeline.from_single_file(pickled, config=tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        SegaPipeline.from_single_file(tmp_path / "missing.safetensors", config=tmp_path)
    (tmp_path / "broken.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(UserError, match="not a readable .safetensors file"):
        SegaPipeline.from_single_file(tmp_path / "broken.safetensors", config=tmp_path)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(UserError, match="no model_index.json"):
        SegaPipeline.from_single_file(tmp_path / "model.safetensors", config=tmp_path)


# ---- torch.compile


def test_compiled_unet_has_no_graph_breaks_and_few_recompiles(sd):
    """torch.compile(unet, fullgraph=True) runs through SEGA's loop: no graph breaks (fullgraph would raise),
    the same pixels, and concepts leaving the batch cost one recompile (to a dynamic batch), not one per size."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    _, ours, _ = sd
    edits = [Edit("glasses", warmup=0, cooldown=3), Edit("hat", warmup=1, cooldown=5)]  # batches of 3, 2 and 1 rows x 2
    kw = dict(num_inference_steps=8, output_type="np")
    base = ours("a face", edits=edits, **kw, generator=_gen()).images
    torch._dynamo.reset()
    counters.clear()
    ours.unet = torch.compile(ours.unet, backend="eager", fullgraph=True)  # eager: no C++ compiler needed here
    got = ours("a face", edits=edits, **kw, generator=_gen()).images
    assert _diff(got, base) <= TOL
    graphs = counters["stats"]["unique_graphs"]
    assert graphs <= 2 and not counters["graph_break"]
    ours("a face", edits=edits, **kw, generator=_gen(1))
    assert counters["stats"]["unique_graphs"] == graphs
