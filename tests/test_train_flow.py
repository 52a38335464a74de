"""The flow model's recipe (train/flow.py): exact text slots, the folded zero rows, a tiny run that resumes, and an
export that stock diffusers loads offline and samples exactly as the recipe does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import StableDiffusion3Pipeline
from transformers import CLIPTextModel, CLIPTokenizer

from segakit.train import cache, flow
from segakit.train.flow_model import build_transformer, noise_levels, use_repeated_row
from segakit.train.flow_text import T5_ROWS, encode, sd3_text_encoder, with_t5_rows

EMBEDDED = Path(flow.__file__).resolve().parents[1] / "assets" / "embedded"
SOURCES = [
    "--vae",
    str(EMBEDDED / "vae"),
    "--text_encoder",
    str(EMBEDDED / "text_encoder"),
    "--tokenizer",
    str(EMBEDDED / "tokenizer"),
]
TINY = SOURCES + [
    "--layers",
    "1",
    "--heads",
    "2",
    "--head_dim",
    "16",
    "--batch_size",
    "4",
    "--threads",
    "1",
    "--sample_steps",
    "2",
    "--log_every",
    "1",
    "--skip_text_encoder_gate",
    "true",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A 16-row latent cache and a 3-step run of a one-block transformer."""
    root = tmp_path_factory.mktemp("flow")
    cache.main(
        ["--n", "16", "--shard_size", "16", "--batch_size", "8", "--out", str(root / "cache"), "--threads", "1"]
        + SOURCES
    )
    flow.main(
        TINY + ["--max_steps", "3", "--sample_every", "3", "--run", str(root / "flow"), "--cache", str(root / "cache")]
    )
    return root


@pytest.fixture(scope="module")
def text_encoder() -> tuple[CLIPTextModel, CLIPTokenizer]:
    te = CLIPTextModel.from_pretrained(EMBEDDED / "text_encoder", dtype=torch.float32, use_safetensors=True).eval()
    return te, CLIPTokenizer.from_pretrained(EMBEDDED / "tokenizer")


def test_sd3_slot_reads_the_fourth_layer_and_pools_the_end_of_text_state(text_encoder):
    te, tok = text_encoder
    slot = sd3_text_encoder(te)
    ids = tok(
        ["a smiling woman with glasses", ""], padding="max_length", max_length=tok.model_max_length, return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        ours, theirs = slot(ids, output_hidden_states=True), te(ids, output_hidden_states=True)
    assert len(ours.hidden_states) == len(theirs.hidden_states) + 1
    assert torch.equal(
        ours.hidden_states[-2], theirs.hidden_states[-1]
    )  # the 4th layer's output, before the final norm
    assert torch.equal(ours.last_hidden_state, theirs.last_hidden_state)
    assert torch.equal(ours.text_embeds, theirs.pooler_output)
    tokens, pooled = encode(slot, tok, ["a doctor"])
    assert tokens.shape == (1, tok.model_max_length, 512) and torch.equal(tokens[..., :256], tokens[..., 256:])
    assert torch.equal(pooled[:, :256], pooled[:, 256:])


def test_one_row_counted_256_times_is_the_stock_computation_with_256_zero_rows():
    torch.manual_seed(0)
    model = build_transformer(2, 2, 16, 64, 64).eval()
    with torch.no_grad():  # no zero-initialised output layers: every path carries signal
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x, text, pooled, t = (
        torch.randn(2, 4, 16, 16),
        torch.randn(2, 7, 64),
        torch.randn(2, 64),
        torch.tensor([250.0, 900.0]),
    )
    with torch.no_grad():
        stock = model(
            x, encoder_hidden_states=with_t5_rows(text, T5_ROWS), pooled_projections=pooled, timestep=t
        ).sample
        one_row = model(x, encoder_hidden_states=with_t5_rows(text, 1), pooled_projections=pooled, timestep=t).sample
        use_repeated_row(model, T5_ROWS)
        folded = model(x, encoder_hidden_states=with_t5_rows(text, 1), pooled_projections=pooled, timestep=t).sample
    assert torch.allclose(folded, stock, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(one_row, stock, atol=1e-3)  # the count matters


def test_noise_levels_lie_in_the_unit_interval_and_shift_moves_them_up():
    g = torch.Generator().manual_seed(0)
    plain = noise_levels(4000, "logit_normal", 1.0, g)
    shifted = noise_levels(4000, "logit_normal", 3.0, torch.Generator().manual_seed(0))
    assert 0 < plain.min() and plain.max() < 1 and abs(float(plain.mean()) - 0.5) < 0.02
    assert bool((shifted >= plain).all())


def test_tiny_run_checkpoints_previews_and_resumes(tiny, tmp_path, capsys):
    run = tiny / "flow"
    assert json.loads((run / "ckpt" / "state.json").read_text())["step"] == 3
    assert (run / "samples" / "step-0000003.png").is_file()
    assert json.loads((run / "transformer_ema" / "training.json").read_text())["step"] == 3
    resumed = tmp_path / "run"
    import shutil

    shutil.copytree(run, resumed)
    capsys.readouterr()
    flow.main(
        TINY + ["--max_steps", "5", "--sample_every", "100", "--run", str(resumed), "--cache", str(tiny / "cache")]
    )
    out = capsys.readouterr().out
    assert "resuming at step 3" in out and "step 5/5 loss" in out and "throughput" in out
    assert json.loads((resumed / "ckpt" / "state.json").read_text())["step"] == 5


def test_export_loads_in_stock_diffusers_and_samples_as_the_recipe_does(tiny, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tiny / "export"
    flow.main(TINY + ["--run", str(tiny / "flow"), "--export", str(out)])
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pt"))
    assert json.loads((out / "vae" / "config.json").read_text())["shift_factor"] == 0.0
    pipe = StableDiffusion3Pipeline.from_pretrained(out, text_encoder_3=None, tokenizer_3=None, use_safetensors=True)
    assert pipe.text_encoder_3 is None and pipe.tokenizer_3 is None
    image = pipe(
        "a smiling woman with glasses",
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images
    assert image.shape == (1, 64, 64, 3) and np.isfinite(image).all()
    # the stock pipeline at its defaults (256 zero T5 rows, guidance 7) gives the recipe's own samples
    latents = pipe(
        "a doctor", num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="latent"
    ).images
    cfg = flow.FlowConfig(sample_steps=2, guidance_scale=7.0, shift=1.0)
    text = flow.Text(pipe.text_encoder, pipe.tokenizer)
    model = pipe.transformer
    use_repeated_row(model, T5_ROWS)
    ours = flow.sample(model, text, ["a doctor"], cfg, torch.device("cpu"), seed=0)
    assert torch.allclose(latents, ours, atol=1e-4)


def test_export_refuses_a_folder_it_did_not_write(tiny, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="--export"):
        flow.main(TINY + ["--run", str(tiny / "flow"), "--export", str(tmp_path)])
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_unknown_timestep_sampling_is_refused_in_one_sentence(tiny, tmp_path):
    with pytest.raises(SystemExit, match="--timestep_sampling"):
        flow.main(
            TINY + ["--timestep_sampling", "cosine", "--run", str(tmp_path / "r"), "--cache", str(tiny / "cache")]
        )


@pytest.mark.parametrize(
    ("flags", "flag"),
    [(["--schedule", "linear"], "--schedule"), (["--schedule", "wsd", "--decay_steps", "0"], "--decay_steps")],
)
def test_bad_schedule_is_refused_in_one_sentence(tiny, tmp_path, flags, flag):
    with pytest.raises(SystemExit, match=flag):
        flow.main(TINY + flags + ["--run", str(tmp_path / "r"), "--cache", str(tiny / "cache")])


def test_training_curves_draw_the_flow_run_on_request(tiny, tmp_path):
    from segakit.train import curves

    assert "flow" not in curves.DEFAULT_STAGES
    out = curves.plot(tiny, tmp_path / "flow.png", ("flow",))
    assert out.stat().st_size > 0
    assert curves.read_metrics(tiny / "flow" / "metrics.jsonl", "loss")[0] == [1, 2, 3]


def test_ship_writes_the_float16_part_that_a_new_run_continues_from(tiny, tmp_path, capsys, monkeypatch):
    """--ship writes what segakit ships of the model; --init continues training from it on a machine without the
    run (its step read from the shipped segakit.json); --ship refuses to replace a folder unless told."""
    from safetensors.torch import load_file

    shipped = tmp_path / "embedded-flow"
    flow.main(TINY + ["--run", str(tiny / "flow"), "--ship", str(shipped)])
    assert sorted(p.name for p in shipped.iterdir()) == ["model_index.json", "scheduler", "segakit.json", "transformer"]
    weights = load_file(shipped / "transformer" / "diffusion_pytorch_model.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.float16}
    assert json.loads((shipped / "segakit.json").read_text())["training"]["flow"]["step"] == 3
    with pytest.raises(SystemExit, match="--overwrite true"):
        flow.main(TINY + ["--run", str(tiny / "flow"), "--ship", str(shipped)])
    capsys.readouterr()
    fresh = tmp_path / "fresh-run"
    flow.main(
        TINY
        + ["--max_steps", "4", "--sample_every", "100", "--run", str(fresh), "--cache", str(tiny / "cache")]
        + ["--init", str(shipped / "transformer")]
    )
    assert "step 4/4 loss" in capsys.readouterr().out  # continued at step 3: one step to go
    assert json.loads((fresh / "ckpt" / "state.json").read_text())["step"] == 4
