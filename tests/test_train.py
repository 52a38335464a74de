"""Smoke runs of the training recipes on tiny configs and a handful of world samples (no real training).

One chain runs once per module: tokenizer -> autoencoder -> clip -> cache -> unet -> assemble, each for a
few steps in a temporary runs folder; the tests then check each product, resuming, and that stock
diffusers loads the assembled folder and generates a 64x64 image.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from segakit.train import autoencoder, cache, embedded, unet
from segakit.train.__main__ import main as train_all
from segakit.train.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint

TINY_AE = [
    "--block_out_channels",
    "32,32,32",
    "--batch_size",
    "4",
    "--amp",
    "false",
    "--scale_samples",
    "16",
    "--log_every",
    "1",
    "--ckpt_every",
    "2",
    "--preview_every",
    "100",
    "--threads",
    "1",
]
TINY_CLIP = [
    "--hidden_size",
    "64",
    "--layers",
    "1",
    "--heads",
    "2",
    "--mlp_size",
    "128",
    "--vision_hidden_size",
    "64",
    "--vision_layers",
    "1",
    "--vision_heads",
    "2",
    "--vision_mlp_size",
    "128",
    "--batch_size",
    "8",
    "--eval_size",
    "16",
    "--log_every",
    "1",
    "--ckpt_every",
    "2",
    "--eval_every",
    "100",
    "--threads",
    "1",
    "--amp",
    "false",
]
TINY_TE = [
    "--batch_size",
    "4",
    "--amp",
    "false",
    "--log_every",
    "1",
    "--ckpt_every",
    "2",
    "--eval_every",
    "0",
    "--warmup",
    "1",
    "--threads",
    "1",
]
TINY_UNET = [
    "--block_out_channels",
    "32,32,32",
    "--attention_head_dim",
    "8",
    "--batch_size",
    "4",
    "--log_every",
    "1",
    "--ckpt_every",
    "2",
    "--sample_every",
    "100",
    "--sample_steps",
    "2",
    "--warmup",
    "2",
    "--threads",
    "1",
    "--skip_text_encoder_gate",
    "true",
]  # the tiny CLIP separates nothing; test_text_encoder.py tests the gate


def staged(stage: str, args: list[str]) -> list[str]:
    """``["--max_steps", "3"]`` -> ``["--unet.max_steps", "3"]`` for ``python -m segakit.train``."""
    return [f"--{stage}.{a[2:]}" if a.startswith("--") else a for a in args]


TINY_ALL = (
    ["--threads", "1"]
    + staged("tokenizer", ["--n_captions", "3000", "--vocab_size", "700", "--min_frequency", "2"])
    + staged("autoencoder", TINY_AE + ["--max_steps", "3"])
    + staged("clip", TINY_CLIP + ["--max_steps", "3"])
    + staged("text_encoder", TINY_TE + ["--max_steps", "2"])
    + staged("cache", ["--n", "24", "--shard_size", "16", "--batch_size", "8"])
    + staged("decoder", TINY_AE + ["--max_steps", "2"])
    + staged("unet", TINY_UNET + ["--max_steps", "3"])
    + staged("assemble", ["--check", "false"])
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    old = os.environ.get("SEGAKIT_RUNS")
    os.environ["SEGAKIT_RUNS"] = str(root)
    try:
        train_all(TINY_ALL + ["--assemble.out", str(root / "assembled")])  # what `make train-embedded` runs
        yield root
    finally:
        if old is None:
            os.environ.pop("SEGAKIT_RUNS", None)
        else:
            os.environ["SEGAKIT_RUNS"] = old


def test_tokenizer_loads_as_clip_tokenizer_and_covers_any_text(runs):
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(runs / "tokenizer")
    assert tok.model_max_length == 48
    ids = tok("a smiling woman with glasses", padding="max_length", max_length=tok.model_max_length).input_ids
    assert len(ids) == 48 and ids[0] == tok.bos_token_id and tok.eos_token_id in ids
    assert tok.decode(ids, skip_special_tokens=True) == "a smiling woman with glasses"
    # byte-level: any text tokenizes without an unknown token, and decodes back (lower-cased)
    odd = "Ünïcode ☃ 42 x-ray!"
    ids = tok(odd).input_ids
    assert tok.unk_token_id not in ids[1:-1]
    assert tok.decode(ids, skip_special_tokens=True).replace(" ", "") == odd.lower().replace(" ", "")
    stats = json.loads((runs / "tokenizer" / "training.json").read_text())
    assert stats["tokens_per_caption_max"] <= 48
    assert (runs / "tokenizer" / "vocab.json").is_file() and (runs / "tokenizer" / "merges.txt").is_file()


def test_autoencoder_final_has_scaling_factor_and_4x_downsampling(runs):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(runs / "autoencoder" / "final")
    assert vae.config.scaling_factor != 0.18215 and vae.config.scaling_factor > 0
    with torch.no_grad():
        z = vae.encode(torch.zeros(1, 3, 64, 64)).latent_dist.mode()
    assert z.shape == (1, 4, 16, 16)
    assert (runs / "autoencoder" / "recon.png").is_file()


def test_autoencoder_resumes_from_checkpoint(runs, tmp_path):
    run = tmp_path / "autoencoder"
    shutil.copytree(runs / "autoencoder", run)  # a copy: the other tests read the 3-step model
    assert json.loads((run / "ckpt" / "state.json").read_text())["step"] == 3
    autoencoder.main(TINY_AE + ["--max_steps", "5", "--run", str(run)])
    assert json.loads((run / "ckpt" / "state.json").read_text())["step"] == 5
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]  # continued at 4, not restarted


def test_decoder_finetune_keeps_encoder_and_scaling_factor(runs):
    from diffusers import AutoencoderKL

    base = AutoencoderKL.from_pretrained(runs / "autoencoder" / "final")
    tuned = AutoencoderKL.from_pretrained(runs / "decoder" / "final")
    assert tuned.config.scaling_factor == base.config.scaling_factor
    b, t = base.state_dict(), tuned.state_dict()
    assert all(torch.equal(b[k], t[k]) for k in b if k.startswith(("encoder.", "quant_conv.")))
    assert any(not torch.equal(b[k], t[k]) for k in b if k.startswith("decoder."))
    assert json.loads((runs / "decoder" / "ckpt" / "state.json").read_text())["step"] == 2
    assert embedded.Parts.under(runs).vae == runs / "decoder" / "final"


def test_clip_saves_model_and_text_encoder(runs):
    from transformers import CLIPModel, CLIPTextModel

    model = CLIPModel.from_pretrained(runs / "clip" / "final")
    text = CLIPTextModel.from_pretrained(runs / "clip" / "text_encoder")
    assert text.config.eos_token_id == model.config.text_config.eos_token_id
    assert text.config.max_position_embeddings == 48
    strip = lambda sd: {k.removeprefix("text_model."): v for k, v in sd.items()}  # noqa: E731
    tower, alone = strip(model.text_model.state_dict()), strip(text.state_dict())
    assert tower.keys() == alone.keys() and all(torch.equal(tower[k], alone[k]) for k in tower)
    state = json.loads((runs / "clip" / "ckpt" / "state.json").read_text())
    assert state["step"] == 3 and state["next_index"] >= 24  # empty captions skipped, index kept for resuming


def test_cache_shards_match_a_fresh_encoding(runs):
    c = cache.open_cache(runs / "cache")
    assert len(c) == 24 and len(c.latents) == 2
    lat, hid = c.rows(torch.tensor([0, 17, 23]))
    assert lat.shape == (3, 4, 16, 16) and hid.shape == (3, 48, 64)
    src = cache.load_sources(cache.CacheConfig(), torch.device("cpu"))
    from segakit.train.data import batch_at

    b = batch_at(0, 17, 1)
    fresh = cache.encode_images(src, b.images)
    assert torch.allclose(fresh[0], lat[1], atol=2e-2)
    _, h = cache.encode_text(src, b.captions, torch.device("cpu"))
    assert torch.allclose(h[0], hid[1], atol=2e-2)


def test_cache_rendered_by_worker_processes_is_identical(runs, tmp_path):
    out = tmp_path / "cache"
    cache.main(
        ["--n", "24", "--shard_size", "16", "--batch_size", "8", "--workers", "2", "--out", str(out), "--threads", "1"]
    )
    for name in ("shard-00000", "shard-00001"):
        assert (out / f"{name}.jsonl").read_text() == (runs / "cache" / f"{name}.jsonl").read_text()
        for key in ("latents", "hidden"):
            assert np.array_equal(
                cache.open_tensor(out / f"{name}.safetensors", key),
                cache.open_tensor(runs / "cache" / f"{name}.safetensors", key),
            )


def test_preloaded_cache_gives_the_same_rows(runs):
    c = cache.open_cache(runs / "cache")
    idx = torch.tensor([23, 0, 16, 15])
    for a, b in zip(c.rows(idx), c.preload(torch.device("cpu")).rows(idx)):
        assert torch.equal(a, b)
    assert len(c.preload(torch.device("cpu"))) == 24


def test_unet_stops_at_its_time_limit_and_saves(runs, tmp_path):
    run = tmp_path / "unet"
    unet.main(TINY_UNET + ["--max_steps", "1000", "--max_minutes", "0.0001", "--run", str(run)])
    step = json.loads((run / "ckpt" / "state.json").read_text())["step"]
    assert 1 <= step < 1000 and json.loads((run / "unet_ema" / "training.json").read_text())["step"] == step


def test_unet_resumes_and_exports_ema(runs, tmp_path):
    run = tmp_path / "unet"
    shutil.copytree(runs / "unet", run)
    assert json.loads((run / "ckpt" / "state.json").read_text())["step"] == 3
    unet.main(TINY_UNET + ["--max_steps", "4", "--sample_every", "4", "--run", str(run)])
    assert json.loads((run / "ckpt" / "state.json").read_text())["step"] == 4
    assert json.loads((run / "unet_ema" / "training.json").read_text())["step"] == 4
    assert (run / "samples" / "step-0000004.png").is_file()
    sched = json.loads((run / "scheduler" / "scheduler_config.json").read_text())
    assert sched["_class_name"] == "DDIMScheduler" and sched["prediction_type"] == "epsilon"


def test_unet_init_starts_model_and_ema_from_given_weights(runs, tmp_path):
    from diffusers import UNet2DConditionModel

    source = runs / "unet" / "unet_ema"  # 3 earlier steps
    run = tmp_path / "unet"
    unet.main(TINY_UNET + ["--max_steps", "0", "--run", str(run), "--init", str(source)])
    got = UNet2DConditionModel.from_pretrained(run / "unet_ema").state_dict()
    want = UNet2DConditionModel.from_pretrained(source).state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)
    info = json.loads((run / "unet_ema" / "training.json").read_text())
    assert info["step"] == 0 and info["total_steps"] == 3 and info["init"]["steps"] == 3
    unet.main(
        TINY_UNET + ["--max_steps", "2", "--run", str(run), "--init", str(source)]
    )  # resumes; keeps the provenance
    info = json.loads((run / "unet_ema" / "training.json").read_text())
    assert info["step"] == 2 and info["total_steps"] == 5


def test_unet_init_refuses_another_architecture(runs, tmp_path):
    args = TINY_UNET + ["--max_steps", "0", "--run", str(tmp_path / "u"), "--init", str(runs / "unet" / "unet_ema")]
    with pytest.raises(SystemExit, match="block_out_channels"):
        unet.main(args + ["--block_out_channels", "32,32,64"])
    with pytest.raises(SystemExit, match="not a diffusers U-Net folder"):
        unet.main(TINY_UNET + ["--run", str(tmp_path / "v"), "--init", str(tmp_path)])


def test_seeding_runs_from_an_assembled_model_marks_those_stages_done(runs, tmp_path, monkeypatch, capsys):
    from segakit.train import shipped

    monkeypatch.setenv("SEGAKIT_RUNS", str(tmp_path / "fresh"))
    shipped.main(["--model", str(runs / "assembled")])
    fresh = tmp_path / "fresh"
    shipped_info = json.loads((runs / "assembled" / "segakit.json").read_text())["training"]
    assert json.loads((fresh / "autoencoder" / "final" / "training.json").read_text()) == shipped_info["autoencoder"]
    train_all(["--stages", "tokenizer,autoencoder,clip"])
    out = capsys.readouterr().out
    assert all(f"[{s}] done already, skipped" in out for s in ("tokenizer", "autoencoder", "clip"))
    shipped.main(["--model", str(runs / "assembled")])
    assert "nothing" in capsys.readouterr().out


def test_batch_indices_cover_each_epoch_once():
    n, b = 10, 4
    rows = torch.cat([unet.batch_indices(s, b, n, seed=0) for s in range(5)])  # 20 rows = 2 epochs
    assert sorted(rows[:10].tolist()) == list(range(10)) and sorted(rows[10:].tolist()) == list(range(10))
    assert torch.equal(unet.batch_indices(3, b, n, 0), unet.batch_indices(3, b, n, 0))


def test_checkpoint_roundtrip_restores_optimizer(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    save_checkpoint(tmp_path / "ckpt", model=model.state_dict(), optimizer=opt, state={"step": 1})
    model2 = torch.nn.Linear(3, 2)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-3)
    state = load_checkpoint(tmp_path / "ckpt", model2, opt2)
    assert state["step"] == 1
    assert torch.equal(model.weight, model2.weight)
    s1, s2 = opt.state_dict()["state"][0], opt2.state_dict()["state"][0]
    assert torch.equal(s1["exp_avg"], s2["exp_avg"]) and float(s1["step"]) == float(s2["step"])
    # an interrupted swap leaves ckpt.old, which is still found
    (tmp_path / "ckpt").rename(tmp_path / "ckpt.old")
    assert find_checkpoint(tmp_path / "ckpt") == tmp_path / "ckpt.old"
    assert not list(tmp_path.rglob("*.pt")) and not list(tmp_path.rglob("*.bin"))


def test_assembled_folder_loads_with_stock_diffusers_and_generates_64px(runs, monkeypatch):
    from diffusers import StableDiffusionPipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = runs / "assembled"
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["tokenizer"] == ["transformers", "CLIPTokenizer"]
    assert index["safety_checker"] == [None, None] and index["feature_extractor"] == [None, None]
    assert embedded.folder_mb(folder) < 60
    assert not [f for f in folder.rglob("*") if f.suffix in (".bin", ".pt", ".ckpt", ".pth")]
    for kwargs in ({}, {"torch_dtype": torch.float32}):  # a plain load must run as it is
        pipe = StableDiffusionPipeline.from_pretrained(folder, **kwargs)
        out = pipe(
            "a smiling woman with glasses",
            num_inference_steps=2,
            generator=torch.Generator().manual_seed(0),
            output_type="np",
        )
        assert out.images.shape == (1, 64, 64, 3) and np.isfinite(out.images).all()
    info = json.loads((folder / "segakit.json").read_text())
    assert info["dtype"]["unet"] == "float16" and info["latent_shape"] == [4, 16, 16]
    assert (folder / "clip" / "preprocessor_config.json").is_file()


def test_rerunning_train_all_skips_finished_stages(runs, capsys):
    before = {
        p: p.stat().st_mtime
        for p in (runs / "autoencoder" / "final", runs / "clip" / "final", runs / "cache" / "DONE.json")
    }
    train_all(TINY_ALL + ["--stages", "tokenizer,autoencoder,clip,cache,decoder,unet", "--unet.sample_every", "100"])
    out = capsys.readouterr().out
    for stage in ("tokenizer", "autoencoder", "clip", "cache", "decoder"):
        assert f"[{stage}] done already, skipped" in out
    assert "resuming at step 3" in out
    assert all(p.stat().st_mtime == t for p, t in before.items())


def test_training_curves_png(runs, tmp_path):
    from segakit.train import curves

    out = curves.plot(runs, tmp_path / "curves.png", ("unet",))
    assert out.is_file() and out.stat().st_size > 1000
    assert curves.earlier_steps(runs / "unet") == 0
