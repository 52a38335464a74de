"""Recipe: the embedded model's CLIP -- a small transformers ``CLIPModel`` trained contrastively on the world.

Text tower: the pipeline's text encoder (its per-token hidden states condition the U-Net, as in SD).
Vision tower: 64x64 images in 8x8 patches; with the text tower it gives CLIP-T / CLIP-I scores.
Loss: CLIP's symmetric cross-entropy, except that pairs whose captions are the same text count as
positives too (short concept captions such as "glasses" repeat within a batch). Empty captions are skipped.
Pixels go in as ``image / 127.5 - 1`` at 64x64 (the saved image processor does exactly that).

    python -m segakit.train.clip                              # the real run (resumes)
    python -m segakit.train.clip --max_steps 3 --run /tmp/clip --batch_size 8   # smoke

Writes ``<run>/ckpt`` (resumable), ``<run>/final`` (``CLIPModel`` + tokenizer + image processor) and
``<run>/text_encoder`` (the ``CLIPTextModel`` alone), ``<run>/metrics.jsonl``.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTextModel, CLIPTokenizer

from segakit.train.checkpoint import load_checkpoint, replace_dir, save_checkpoint
from segakit.train.config import config_dict, lr_at, parse_config, runs_root, setup_torch
from segakit.train.data import PREVIEW_SEED, TRAIN_SEED, batch_at


@dataclass
class ClipConfig:
    run: str = ""  # default: $SEGAKIT_RUNS/clip
    tokenizer: str = ""  # default: $SEGAKIT_RUNS/tokenizer
    device: str = "cpu"
    threads: int = 0
    amp: bool = True  # bfloat16 autocast for the towers (~1.5x faster on a CPU with avx512_bf16)
    seed: int = TRAIN_SEED
    # model
    hidden_size: int = 256  # text tower width = the U-Net's cross_attention_dim
    layers: int = 4
    heads: int = 4
    mlp_size: int = 1024
    vision_hidden_size: int = 192
    vision_layers: int = 4
    vision_heads: int = 3
    vision_mlp_size: int = 768
    patch_size: int = 8
    projection_dim: int = 128
    # optimisation
    batch_size: int = 128
    max_steps: int = 1200
    lr: float = 5e-4
    warmup: int = 150
    schedule: str = "cosine"
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    # bookkeeping
    log_every: int = 25
    ckpt_every: int = 100
    eval_every: int = 500
    eval_size: int = 256


def build_model(cfg: ClipConfig, tokenizer: CLIPTokenizer) -> CLIPModel:
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.mlp_size,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        projection_dim=cfg.projection_dim,
    )
    vision = dict(
        image_size=64,
        patch_size=cfg.patch_size,
        hidden_size=cfg.vision_hidden_size,
        intermediate_size=cfg.vision_mlp_size,
        num_hidden_layers=cfg.vision_layers,
        num_attention_heads=cfg.vision_heads,
        projection_dim=cfg.projection_dim,
    )
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=cfg.projection_dim)
    return CLIPModel(config)


def image_processor() -> CLIPImageProcessor:
    """64x64 in, ``pixel / 127.5 - 1`` out: what the vision tower was trained on."""
    return CLIPImageProcessor(
        do_resize=True,
        size={"shortest_edge": 64},
        do_center_crop=True,
        crop_size={"height": 64, "width": 64},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )


def tokenize(tokenizer: CLIPTokenizer, captions: list[str], device: torch.device) -> torch.Tensor:
    """Padded to the longest caption of the batch: the pooled (EOS) feature is the same as with full
    padding because the text tower is causal, and short batches cost less."""
    ids = tokenizer(
        captions, padding="longest", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    )
    return ids.input_ids.to(device)


def _pooled(out) -> torch.Tensor:
    # transformers 4 returns the projected features, transformers 5 an output whose pooler_output holds them
    return out if torch.is_tensor(out) else out.pooler_output


def contrastive_loss(
    model: CLIPModel, images: torch.Tensor, ids: torch.Tensor, captions: list[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    out = model(input_ids=ids, pixel_values=images)
    # logits in float32 even under bf16 autocast: with a temperature up to 100, bf16 rounding would be ~0.5
    img, txt = F.normalize(out.image_embeds.float(), dim=-1), F.normalize(out.text_embeds.float(), dim=-1)
    logits = model.logit_scale.float().exp() * img @ txt.T  # (N images, N texts)
    same = torch.tensor([[a == b for b in captions] for a in captions], device=logits.device, dtype=torch.float32)
    targets = same / same.sum(1, keepdim=True)
    loss = 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))
    acc = (same[torch.arange(len(captions)), logits.argmax(1)] > 0).float().mean()
    return loss, acc


@torch.no_grad()
def evaluate(model: CLIPModel, tokenizer: CLIPTokenizer, device: torch.device, n: int) -> dict[str, float]:
    """Held-out image->text top-1 over ``n`` pairs, and zero-shot accuracy on the multi-valued attributes."""
    from segakit.world.captions import CONCEPTS

    model.eval()
    batch = batch_at(PREVIEW_SEED, 0, n, need_caption=True)
    images = batch.images.to(device)
    _, acc = contrastive_loss(model, images, tokenize(tokenizer, batch.captions, device), batch.captions)
    img = F.normalize(_pooled(model.get_image_features(pixel_values=images)), dim=-1)
    scores = {"retrieval_top1": acc.item()}
    for attr in ("presentation", "hair_style", "hair_color", "expression", "role", "skin"):
        values = [v for v in CONCEPTS[attr] if v != "none"]
        prompts = [CONCEPTS[attr][v][0] for v in values]
        txt = F.normalize(_pooled(model.get_text_features(input_ids=tokenize(tokenizer, prompts, device))), dim=-1)
        pred = (img @ txt.T).argmax(1).tolist()
        keep = [i for i, lab in enumerate(batch.labels) if lab[attr] in values]
        scores[f"zeroshot_{attr}"] = sum(values[pred[i]] == batch.labels[i][attr] for i in keep) / max(1, len(keep))
    model.train()
    return scores


def text_encoder_of(model: CLIPModel) -> CLIPTextModel:
    """The text tower as a standalone ``CLIPTextModel`` (transformers 5 nests one; 4 nests its transformer)."""
    if isinstance(model.text_model, CLIPTextModel):
        return copy.deepcopy(model.text_model)
    text = CLIPTextModel(model.config.text_config)
    text.text_model.load_state_dict(model.text_model.state_dict())
    return text


def train(cfg: ClipConfig) -> Path:
    device = setup_torch(cfg.device, cfg.threads)
    root = runs_root()
    run = Path(cfg.run) if cfg.run else root / "clip"
    run.mkdir(parents=True, exist_ok=True)
    tokenizer = CLIPTokenizer.from_pretrained(cfg.tokenizer or root / "tokenizer")
    torch.manual_seed(0)
    model = build_model(cfg, tokenizer).to(device)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    state = load_checkpoint(run / "ckpt", model, opt)
    step, next_index = (state["step"], state["next_index"]) if state else (0, 0)
    n_params = sum(p.numel() for p in model.parameters())
    n_text = sum(p.numel() for p in model.text_model.parameters())
    print(
        f"clip: {n_params / 1e6:.2f}M params (text tower {n_text / 1e6:.2f}M), "
        f"{'resuming at step ' + str(step) if state else 'from scratch'} -> {run}",
        flush=True,
    )
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if cfg.amp else nullcontext()
    metrics = open(run / "metrics.jsonl", "a")
    t_last, seen = time.time(), 0
    while step < cfg.max_steps:
        lr = lr_at(step, cfg.lr, cfg.warmup, cfg.max_steps, cfg.schedule)
        for g in opt.param_groups:
            g["lr"] = lr
        batch = batch_at(cfg.seed, next_index, cfg.batch_size, need_caption=True)
        next_index = batch.next_index
        with amp:
            loss, acc = contrastive_loss(
                model, batch.images.to(device), tokenize(tokenizer, batch.captions, device), batch.captions
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, 4.6052)  # temperature at most 100, as in CLIP
        step += 1
        seen += cfg.batch_size
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            dt = time.time() - t_last
            print(
                f"step {step}/{cfg.max_steps} loss {loss.item():.4f} batch top1 {acc.item():.3f} "
                f"scale {model.logit_scale.exp().item():.1f} lr {lr:.2e}",
                flush=True,
            )
            print(f"  throughput {seen / dt:.1f} pairs/s, {dt / max(1, seen // cfg.batch_size):.2f} s/step", flush=True)
            metrics.write(
                json.dumps(
                    {"step": step, "lr": lr, "loss": loss.item(), "batch_top1": acc.item(), "pairs_per_s": seen / dt}
                )
                + "\n"
            )
            metrics.flush()
            t_last, seen = time.time(), 0
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            scores = evaluate(model, tokenizer, device, cfg.eval_size)
            print("  eval " + " ".join(f"{k} {v:.3f}" for k, v in scores.items()), flush=True)
            metrics.write(json.dumps({"step": step, **scores}) + "\n")
            metrics.flush()
        if step % cfg.ckpt_every == 0 or step == cfg.max_steps:
            save_checkpoint(
                run / "ckpt",
                model=model.state_dict(),
                optimizer=opt,
                state={"step": step, "next_index": next_index, "config": config_dict(cfg)},
            )
    metrics.close()
    scores = evaluate(model, tokenizer, device, cfg.eval_size)
    model.to("cpu")
    for name, obj in (("final", model), ("text_encoder", text_encoder_of(model))):
        tmp = run / f"{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        obj.save_pretrained(tmp, safe_serialization=True)
        if name == "final":
            tokenizer.save_pretrained(tmp)
            image_processor().save_pretrained(tmp)
            (tmp / "training.json").write_text(
                json.dumps({"step": step, "eval": scores, "config": config_dict(cfg)}, indent=1)
            )
        replace_dir(tmp, run / name)
    print(f"clip done: {scores} -> {run / 'final'}", flush=True)
    return run / "final"


def main(argv: list[str] | None = None) -> None:
    train(parse_config(ClipConfig, argv))


if __name__ == "__main__":
    main()
