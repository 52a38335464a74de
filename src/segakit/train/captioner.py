"""Recipe: the embedded model's captioner -- a small BLIP (stock ``BlipForConditionalGeneration``) trained on
world renders and their world captions (issue 17).

The architecture is transformers' own, only smaller: a ViT image tower at the world's 64 px (8 px patches, so
64 patch tokens), a BERT-style text decoder with cross-attention to it. The image tower starts from the embedded
model's CLIP image tower (``--init_vision embedded``; same ViT, so its weights map one to one: q/k/v into BLIP's
fused ``qkv``, and CLIP's pre-layernorm, which BLIP lacks, folded into the patch and position embeddings as the
affine map it amounts to on world renders), which was trained to read the world's attributes; a tower trained
from scratch in the same time only learned the priors (73.6% of mentions right, mostly guessed "without"); the
shipped captioner starts from the CLIP tower and states 99.0% of its mentions right (docs/editing.md). The tokenizer is a ``BertTokenizer`` whose
vocabulary is every word of the world's captions (so nothing splits into word pieces); ``BlipProcessor`` saves it
with a ``BlipImageProcessor`` at 64 px, so the folder loads with ``BlipForConditionalGeneration.from_pretrained``
and ``BlipProcessor.from_pretrained`` like the paper's BLIP base, and :class:`segakit.editing.Captioner` reads it.

Data: sample ``i`` of ``seed`` is a face from the world's priors, its render, and a *full* world caption that
mentions at least ``min_mentions`` attributes (drawn by the world's own caption planner, with which ones forced
at random), so the captioner learns to say several attributes of what it sees. Evaluation images come from
another seed (``segakit.eval.captioner``).

    python -m segakit.train.captioner --threads 1 --run /work/runs-edit/captioner-clip --max_steps 1000 \\
        --max_minutes 35 --eval_n 300 --export src/segakit/assets/captioner --overwrite true   # the shipped run (resumes)
    python -m segakit.train.captioner --max_steps 2 --batch_size 4 --run /tmp/cap --eval_n 0   # smoke

Writes ``<run>/ckpt`` (resumable: weights, AdamW state, the data position), ``<run>/model`` (the loadable folder,
refreshed at each checkpoint) and ``<run>/metrics.jsonl``.
"""

from __future__ import annotations

import copy
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import (
    BertTokenizer,
    BlipConfig,
    BlipForConditionalGeneration,
    BlipImageProcessor,
    BlipProcessor,
)

from segakit.train.checkpoint import (
    check_export,
    copy_dir,
    find_checkpoint,
    load_checkpoint,
    save_checkpoint,
    save_pretrained_dir,
)
from segakit.train.config import config_dict, lr_at, parse_config, setup_torch
from segakit.world.captions import SYNONYMS, TEMPLATES, realize
from segakit.world.dataset import rng_for
from segakit.world.edit_captions import rich_caption_plan
from segakit.world.render import render
from segakit.world.schema import sample_face

CAPTION_STREAM = 7  # a random stream of the world's seeds that no other recipe reads
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORD = re.compile(r"\w+|[^\w\s]")  # BERT's basic split: words, and each punctuation mark alone


@dataclass
class CaptionerConfig:
    run: str = "runs/captioner"
    export: str = ""  # also copy the final folder here (e.g. src/segakit/assets/captioner)
    overwrite: bool = False  # --overwrite true: replace an existing --export (the output policy: never unasked)
    device: str = "cpu"
    threads: int = 1
    seed: int = 0  # training seed of the world (evaluation: segakit.eval.captioner's seed)
    min_mentions: int = 5  # every training caption names at least this many attributes
    vocab_captions: int = 20000  # captions read to collect the vocabulary
    # model (BlipConfig): the image tower is the CLIP's ("embedded" or a CLIPModel folder) or, with "scratch", these sizes
    init_vision: str = "embedded"
    vision_lr_scale: float = 0.3  # the image tower's learning rate relative to lr (it starts trained)
    hidden: int = 128  # the text decoder's (and a scratch image tower's) width
    layers: int = 3
    heads: int = 4
    patch: int = 8
    mlp: int = 512
    max_tokens: int = 48
    # optimisation
    batch_size: int = 64
    max_steps: int = 300
    lr: float = 1e-3
    warmup: int = 50
    schedule: str = "cosine"
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    # bookkeeping
    max_minutes: float = 0.0  # stop (checkpoint and export) after this much wall time in this run; 0 = no limit
    log_every: int = 25
    ckpt_every: int = 50
    eval_n: int = 500  # held-out renders measured at the end (0: none; as python -m segakit.eval.captioner)


# ----------------------------------------------------------------------------------------------- data
def training_caption(face, rng: np.random.Generator, min_mentions: int) -> str:
    """A full world caption of ``face`` that names at least ``min_mentions`` attributes."""
    return realize(rich_caption_plan(face, rng, min_mentions), face)


def example_at(seed: int, index: int, min_mentions: int):
    """(render, caption, face) of world item ``index`` of ``seed`` in the captioner's stream."""
    rng = rng_for(seed, index, CAPTION_STREAM)
    face = sample_face(rng)
    return render(face), training_caption(face, rng, min_mentions), face


def vocabulary(n_captions: int, seed: int, min_mentions: int) -> list[str]:
    """Every lower-cased word and punctuation mark of the world's caption phrases and templates, and of
    ``n_captions`` training captions (in the order first seen, so the list is deterministic)."""
    words: dict[str, None] = {}
    texts = [p for attr in SYNONYMS.values() for ps in attr.values() for p in ps] + TEMPLATES
    for text in texts:
        words.update(dict.fromkeys(WORD.findall(text.lower())))
    for i in range(n_captions):
        rng = rng_for(seed, i, CAPTION_STREAM)
        face = sample_face(rng)
        words.update(dict.fromkeys(WORD.findall(training_caption(face, rng, min_mentions).lower())))
    words.pop("{", None), words.pop("}", None)
    return list(words)


def build_processor(words: list[str], folder: Path, clip_pixels: bool = True) -> BlipProcessor:
    """A ``BlipProcessor``: a ``BertTokenizer`` over ``words`` and a 64 px ``BlipImageProcessor`` (with
    ``clip_pixels``, pixels to [-1, 1] as the embedded model's CLIP reads them; else BLIP's own normalisation)."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(SPECIALS + [w for w in words if w not in SPECIALS]) + "\n")
    tokenizer = BertTokenizer(str(vocab), do_lower_case=True)
    norm = {"image_mean": [0.5] * 3, "image_std": [0.5] * 3} if clip_pixels else {}
    images = BlipImageProcessor(size={"height": 64, "width": 64}, do_resize=True, **norm)
    return BlipProcessor(image_processor=images, tokenizer=tokenizer)


def clip_folder(init: str) -> Path | None:
    if init in ("", "scratch"):
        return None
    return Path(__file__).resolve().parents[1] / "assets" / "embedded" / "clip" if init == "embedded" else Path(init)


def build_model(cfg: CaptionerConfig, tokenizer) -> BlipForConditionalGeneration:
    """Stock BLIP at the world's size; the decoder starts at [CLS] and stops at [SEP]."""
    clip = clip_folder(cfg.init_vision)
    if clip is not None:
        c = json.loads((clip / "config.json").read_text())["vision_config"]
        vision = {k: c[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                                    "image_size", "patch_size", "hidden_act", "layer_norm_eps")}  # fmt: skip
    else:
        vision = {"hidden_size": cfg.hidden, "intermediate_size": cfg.mlp, "num_hidden_layers": cfg.layers,
                  "num_attention_heads": cfg.heads, "image_size": 64, "patch_size": cfg.patch}  # fmt: skip
    text = {"vocab_size": len(tokenizer), "hidden_size": cfg.hidden, "encoder_hidden_size": vision["hidden_size"],
            "intermediate_size": cfg.mlp, "num_hidden_layers": cfg.layers, "num_attention_heads": cfg.heads,
            "max_position_embeddings": cfg.max_tokens, "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.cls_token_id, "sep_token_id": tokenizer.sep_token_id, "eos_token_id": tokenizer.sep_token_id}  # fmt: skip
    return BlipForConditionalGeneration(BlipConfig(vision_config=vision, text_config=text, projection_dim=cfg.hidden))


@torch.no_grad()
def vision_from_clip(model: BlipForConditionalGeneration, folder: Path, pixel_values: torch.Tensor) -> None:
    """Copy a CLIP image tower into BLIP's (same ViT). CLIP normalises the embeddings (``pre_layrnorm``) before the
    first layer and BLIP does not; on ``pixel_values`` (world renders) that layer norm is fitted by one affine map
    (the mean per-token mean and spread), folded into the patch, class and position embeddings."""
    from safetensors.torch import load_file

    sd = {
        k.removeprefix("vision_model."): v.float()
        for k, v in load_file(folder / "model.safetensors").items()
        if k.startswith("vision_model.")
    }
    emb = model.vision_model.embeddings
    w, pos, cls = (
        sd["embeddings.patch_embedding.weight"],
        sd["embeddings.position_embedding.weight"],
        sd["embeddings.class_embedding"],
    )
    patches = torch.nn.functional.conv2d(pixel_values, w, stride=w.shape[-1]).flatten(2).transpose(1, 2)
    e = torch.cat([cls.expand(len(patches), 1, -1), patches], 1) + pos
    mean, spread = e.mean(-1).mean(), e.std(-1, unbiased=False).mean()
    scale = sd["pre_layrnorm.weight"] / spread
    shift = sd["pre_layrnorm.bias"] - mean * scale
    emb.patch_embedding.weight.copy_(w * scale[:, None, None, None])
    emb.patch_embedding.bias.copy_(shift)
    emb.class_embedding.copy_((cls * scale + shift)[None, None])
    emb.position_embedding.copy_((pos * scale)[None])
    for i, layer in enumerate(model.vision_model.encoder.layers):
        p = f"encoder.layers.{i}."
        layer.self_attn.qkv.weight.copy_(torch.cat([sd[p + f"self_attn.{x}_proj.weight"] for x in "qkv"]))
        layer.self_attn.qkv.bias.copy_(torch.cat([sd[p + f"self_attn.{x}_proj.bias"] for x in "qkv"]))
        layer.self_attn.projection.weight.copy_(sd[p + "self_attn.out_proj.weight"])
        layer.self_attn.projection.bias.copy_(sd[p + "self_attn.out_proj.bias"])
        for name in ("layer_norm1", "layer_norm2", "mlp.fc1", "mlp.fc2"):
            mod = layer.get_submodule(name)
            mod.weight.copy_(sd[p + name + ".weight"])
            mod.bias.copy_(sd[p + name + ".bias"])
    model.vision_model.post_layernorm.weight.copy_(sd["post_layernorm.weight"])
    model.vision_model.post_layernorm.bias.copy_(sd["post_layernorm.bias"])


def batch_at(
    cfg: CaptionerConfig, processor: BlipProcessor, start: int, device: torch.device
) -> dict[str, torch.Tensor]:
    images, captions = [], []
    for i in range(start, start + cfg.batch_size):
        image, caption, _ = example_at(cfg.seed, i, cfg.min_mentions)
        images.append(image)
        captions.append(caption)
    enc = processor(
        images=images, text=captions, padding=True, truncation=True, max_length=cfg.max_tokens, return_tensors="pt"
    )
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    return {"pixel_values": enc["pixel_values"].to(device), "input_ids": enc["input_ids"].to(device),
            "attention_mask": enc["attention_mask"].to(device), "labels": labels.to(device)}  # fmt: skip


# ------------------------------------------------------------------------------------------- training
def export(model: BlipForConditionalGeneration, processor: BlipProcessor, folder: Path, info: dict) -> None:
    """The loadable folder (safetensors, processor, training.json), written whole or not at all."""
    half = copy.deepcopy(model).to("cpu", torch.float16)  # half the bytes; Captioner loads it as float32
    save_pretrained_dir(folder, info, half, processor)


def train(cfg: CaptionerConfig) -> Path:
    check_export(cfg.export, cfg.overwrite)
    device = setup_torch(cfg.device, cfg.threads)
    run = Path(cfg.run)
    run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    processor = build_processor(
        vocabulary(cfg.vocab_captions, cfg.seed, cfg.min_mentions),
        run / "vocab",
        clip_folder(cfg.init_vision) is not None,
    )
    model = build_model(cfg, processor.tokenizer)
    if find_checkpoint(run / "ckpt") is None and clip_folder(cfg.init_vision) is not None:  # a fresh run
        vision_from_clip(
            model, clip_folder(cfg.init_vision), batch_at(cfg, processor, 0, torch.device("cpu"))["pixel_values"]
        )
    model.to(device)
    groups: dict[tuple[bool, bool], list] = {}
    for n, p in model.named_parameters():  # (image tower?, decayed?)
        groups.setdefault((n.startswith("vision_model."), p.ndim >= 2 and "embedding" not in n), []).append(p)
    opt = torch.optim.AdamW([{"params": ps, "weight_decay": cfg.weight_decay if decayed else 0.0,
                              "lr_scale": cfg.vision_lr_scale if vision else 1.0} for (vision, decayed), ps in sorted(groups.items())],
                            lr=cfg.lr)  # fmt: skip
    state = load_checkpoint(run / "ckpt", model, opt)
    step = state["step"] if state else 0
    n_params = sum(p.numel() for p in model.parameters())
    print(f"captioner: BLIP {n_params / 1e6:.2f}M params, vocabulary {len(processor.tokenizer)}, "
          f"{'resuming at step ' + str(step) if state else 'step 0'} -> {run}", flush=True)  # fmt: skip
    metrics = open(run / "metrics.jsonl", "a")
    info = lambda: {"recipe": "python -m segakit.train.captioner", "step": step, "max_steps": cfg.max_steps,
                    "params": n_params, "config": config_dict(cfg)}  # fmt: skip
    deadline = time.time() + cfg.max_minutes * 60 if cfg.max_minutes > 0 else float("inf")
    t_last, seen = time.time(), 0
    model.train()
    while step < cfg.max_steps:
        lr = lr_at(step, cfg.lr, cfg.warmup, cfg.max_steps, cfg.schedule)
        for g in opt.param_groups:
            g["lr"] = lr * g["lr_scale"]
        loss = model(**batch_at(cfg, processor, step * cfg.batch_size, device)).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        seen += cfg.batch_size
        stop = time.time() > deadline
        if step % cfg.log_every == 0 or step == cfg.max_steps or stop:
            dt = time.time() - t_last
            print(
                f"step {step}/{cfg.max_steps} loss {loss.item():.4f} lr {lr:.2e} | {seen / dt:.1f} samples/s",
                flush=True,
            )
            metrics.write(
                json.dumps(
                    {"step": step, "loss": loss.item(), "lr": lr, "samples_per_s": seen / dt, "time": time.time()}
                )
                + "\n"
            )
            metrics.flush()
            t_last, seen = time.time(), 0
        if step % cfg.ckpt_every == 0 or step == cfg.max_steps or stop:
            save_checkpoint(
                run / "ckpt", model=model.state_dict(), optimizer=opt, state={"step": step, "config": config_dict(cfg)}
            )
            export(model, processor, run / "model", info())
        if stop:
            print(f"captioner: --max_minutes {cfg.max_minutes} reached at step {step}; run again to resume", flush=True)
            break
    metrics.close()
    if not (run / "model").is_dir():
        export(model, processor, run / "model", info())
    if cfg.eval_n:
        from segakit.eval.captioner import measure

        print("eval " + json.dumps(measure(run / "model", n=cfg.eval_n).summary()), flush=True)
    if cfg.export and step >= cfg.max_steps:
        print(f"exported {copy_dir(run / 'model', Path(cfg.export))}", flush=True)
    print(f"captioner done at step {step} -> {run / 'model'}", flush=True)
    return run / "model"


def main(argv: list[str] | None = None) -> None:
    train(parse_config(CaptionerConfig, argv))


if __name__ == "__main__":
    main()
