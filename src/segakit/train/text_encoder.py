"""Recipe: the embedded model's CLIP v2 -- a text encoder that tells every attribute value apart (issue 15).

The first CLIP (``train/clip.py``, 1,200 steps of plain contrastive loss) mapped "with glasses", "wearing a
hat", "smiling" and "with bangs" to almost the plain prompt (``python -m segakit.eval.text_encoder``), and its
image tower barely read hat, bangs or expression. This recipe continues that CLIP (or starts one from scratch)
with four objectives per step, on world samples whose caption *plans* are kept so that captions can be varied:

1. **contrastive with hard negatives**: every image is scored against the batch's true captions *and*, per
   sample, the same caption plan realised on the face with one mentioned attribute changed
   ("... with glasses" -> "... without glasses", "smiling" -> "frowning"): the image tower has to read that
   attribute and the text tower has to encode it;
2. **supervised attribute heads**: a linear head per attribute on the image embedding (every value), on the
   text embedding and on the mean of the per-token hidden states the U-Net reads (the values the caption
   states, read back by ``parse_caption``, plus an "unstated" class, so "a face of a person" and
   "a face of a person with glasses" differ);
3. **separation** of the hidden-state sequence (the measure of ``segakit.eval.text_encoder``): a hinge
   pushes 1 - cos between a caption and its one-attribute variant (changed, or dropped) above ``margin_ratio``
   of the man/woman distance (measured in the same step; the eval's yardstick), capped at ``margin_max``;
   variants that change the presentation are left out, so the yardstick does not chase itself;
4. **nuisance**: the same caption in another template or synonym ("a photo of" / "a drawing of",
   "glasses" / "spectacles") is pulled to the same sequence.

The heads exist only for training; what ships is a stock ``CLIPModel`` (``clip/``) and its text tower as a
``CLIPTextModel`` (``text_encoder/``, width 256 = the U-Net's ``cross_attention_dim``).

    python -m segakit.train.text_encoder --threads 1 --run /work/runs-te/te       # the real run (resumes)
    python -m segakit.train.text_encoder --max_steps 2 --batch_size 8 --run /tmp/te --eval_every 0   # smoke

Writes ``<run>/ckpt`` (resumable), ``<run>/model`` (``text_encoder/``, ``tokenizer/``, ``clip/``: the layout of
the embedded model, refreshed at each checkpoint, so ``segakit.eval.text_encoder --model <run>/model`` and
the cache / U-Net stages can read it) and ``<run>/metrics.jsonl``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import CLIPModel, CLIPTokenizer

from segakit.core.errors import UserError
from segakit.train.checkpoint import load_checkpoint, replace_dir, save_checkpoint
from segakit.train.clip import ClipConfig, build_model, image_processor, text_encoder_of
from segakit.train.config import config_dict, lr_at, parse_config, runs_root, setup_torch
from segakit.train.data import TRAIN_SEED, to_tensor
from segakit.world.captions import TEMPLATES, CaptionPlan, parse_caption, plan_caption, realize
from segakit.world.dataset import rng_for
from segakit.world.render import render
from segakit.world.schema import ATTRIBUTES, Face, sample_face


@dataclass
class TextEncoderConfig:
    run: str = ""  # default: $SEGAKIT_RUNS/text_encoder
    init: str = (
        "embedded"  # "embedded" (the shipped clip/), a CLIPModel folder, or "scratch" (train/clip.py's architecture)
    )
    tokenizer: str = ""  # default: the shipped tokenizer
    device: str = "cpu"
    threads: int = 0
    amp: bool = True  # bfloat16 autocast for the towers; losses in float32
    seed: int = TRAIN_SEED
    data_offset: int = 2_000_000  # first world index (clear of the indices the first CLIP saw)
    # objectives
    p_drop: float = 0.3  # share of variants that drop the attribute instead of changing it
    w_attr_image: float = 1.0
    w_attr_text: float = 1.0
    w_attr_hidden: float = 1.0
    w_sep: float = 10.0
    margin: float = (
        0.08  # wanted 1 - cos between a caption's hidden sequence and its one-attribute variant, at least ...
    )
    margin_ratio: float = (
        0.6  # ... and at least this share of the man/woman distance (the measure's yardstick, this step) ...
    )
    margin_max: float = (
        0.3  # ... but at most this (with no cap the yardstick ran away: man/woman 1 - cos 1.2 by step 125)
    )
    w_nuisance: float = 10.0
    # optimisation
    batch_size: int = 64
    max_steps: int = 3000
    lr: float = 3e-4
    warmup: int = 100
    schedule: str = "cosine"
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    # bookkeeping
    max_minutes: float = 0.0  # stop (checkpoint and export) after this much wall time in this run; 0 = no limit
    log_every: int = 25
    ckpt_every: int = 100
    eval_every: int = 250  # 0 = never (the eval costs ~20 s on one core)


REFERENCE_PAIR = ("a face of a man", "a face of a woman")  # the yardstick of segakit.eval.text_encoder


# ----------------------------------------------------------------------------------------------- data
@dataclass
class Example:
    image: torch.Tensor  # (3, 64, 64) in [-1, 1]
    labels: dict
    caption: str
    variant: str  # the caption with one mentioned attribute changed or dropped
    changed: bool  # True: the variant is a false caption of the image (a hard negative); False: dropped
    attr: str  # the attribute the variant changed or dropped
    twin: str  # the same caption in other nuisance wording ("" when the caption has none to vary)


def changed_face(face: Face, attr: str, rng: np.random.Generator) -> Face | None:
    """``face`` with ``attr`` set to another value (bangs cleared when made bald); None if impossible."""
    values = [v for v in ATTRIBUTES[attr] if v != getattr(face, attr)]
    changes = {attr: values[int(rng.integers(len(values)))]}
    if attr == "hair_style" and changes[attr] == "bald":
        changes["bangs"] = False
    try:
        return dataclasses.replace(face, **changes)
    except UserError:  # bangs on a bald head
        return None


def variant_of(
    plan: CaptionPlan, face: Face, text: str, rng: np.random.Generator, p_drop: float
) -> tuple[str, bool, str] | None:
    """The caption with one mentioned attribute changed (a false caption) or, with ``p_drop``, left out
    (still true, but says less); None when no mentioned attribute yields a caption that states something else
    (read back by ``parse_caption``: a bald head's hair colour, say, changes no word)."""
    stated = parse_caption(text)
    for attr in [plan.attrs[i] for i in rng.permutation(len(plan.attrs))]:
        if plan.kind == "full" and rng.random() < p_drop:
            other = realize(dataclasses.replace(plan, attrs=[a for a in plan.attrs if a != attr]), face)
            if parse_caption(other) != stated:
                return other, False, attr
        new = changed_face(face, attr, rng)
        if new is not None:
            other = realize(plan, new)
            if parse_caption(other) != stated:
                return other, True, attr
    return None


def twin_of(plan: CaptionPlan, face: Face, text: str, rng: np.random.Generator) -> str:
    """The caption in other wording that carries no image information: another template and neutral noun for
    a full caption, another synonym for a concept caption."""
    for _ in range(4):
        if plan.kind == "full":
            alt = dataclasses.replace(plan, template=int(rng.integers(len(TEMPLATES))), noun_u=float(rng.random()))
        else:
            u = dict(plan.u)
            u[plan.attrs[0]] = u[plan.attrs[0]].copy()
            u[plan.attrs[0]][0] = rng.random()
            alt = dataclasses.replace(plan, u=u)
        other = realize(alt, face)
        if other != text:
            return other
    return ""


def example_at(seed: int, index: int, p_drop: float) -> Example | None:
    """World sample ``index`` (the same face and caption as ``world.dataset.sample_at``) with its variant and
    twin; None when the caption is empty or has no variant."""
    rng = rng_for(seed, index)
    face = sample_face(rng)
    plan = plan_caption(face, rng)
    text = realize(plan, face)
    if not text.strip():
        return None
    aux = np.random.default_rng([seed, index, 15])
    var = variant_of(plan, face, text, aux, p_drop)
    if var is None:
        return None
    return Example(
        to_tensor([render(face)])[0], face.labels(), text, var[0], var[1], var[2], twin_of(plan, face, text, aux)
    )


def examples_at(seed: int, start: int, n: int, p_drop: float) -> tuple[list[Example], int]:
    out, index = [], start
    while len(out) < n:
        ex = example_at(seed, index, p_drop)
        index += 1
        if ex is not None:
            out.append(ex)
    return out, index


def stated_targets(captions: list[str]) -> dict[str, torch.Tensor]:
    """Per attribute, the class each caption states: the value's index, or ``len(values)`` when unstated or ambiguous."""
    parsed = [parse_caption(c) for c in captions]
    out = {}
    for attr, values in ATTRIBUTES.items():
        idx = [values.index(next(iter(p[attr]))) if len(p.get(attr, ())) == 1 else len(values) for p in parsed]
        out[attr] = torch.tensor(idx)
    return out


# ---------------------------------------------------------------------------------------------- model
class Trainee(nn.Module):
    """The CLIP plus the training-only attribute heads (image: values; text and hidden: values + unstated)."""

    def __init__(self, clip: CLIPModel) -> None:
        super().__init__()
        self.clip = clip
        proj, width = clip.config.projection_dim, clip.config.text_config.hidden_size
        self.image_heads = nn.ModuleDict({a: nn.Linear(proj, len(v)) for a, v in ATTRIBUTES.items()})
        self.text_heads = nn.ModuleDict({a: nn.Linear(proj, len(v) + 1) for a, v in ATTRIBUTES.items()})
        self.hidden_heads = nn.ModuleDict({a: nn.Linear(width, len(v) + 1) for a, v in ATTRIBUTES.items()})


def load_clip(init: str, tokenizer: CLIPTokenizer) -> CLIPModel:
    if init == "scratch":
        return build_model(ClipConfig(), tokenizer)
    folder = _shipped() / "clip" if init == "embedded" else Path(init)
    if not (folder / "config.json").is_file():
        raise SystemExit(f"--init {init!r}: {folder} is not a CLIPModel folder (no config.json).")
    return CLIPModel.from_pretrained(folder, dtype=torch.float32, use_safetensors=True)


def _shipped() -> Path:
    from segakit.train.embedded import DEFAULT_OUT

    return DEFAULT_OUT


def heads_loss(heads: nn.ModuleDict, x: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.stack([F.cross_entropy(heads[a](x), t) for a, t in targets.items()]).mean()


def sequence_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 - cos of flattened (N, L, D) sequences -> (N,), as ``segakit.eval.text_encoder`` measures it."""
    return 1 - F.cosine_similarity(a.flatten(1), b.flatten(1), dim=-1)


def losses(
    model: Trainee, batch: list[Example], tokenizer: CLIPTokenizer, cfg: TextEncoderConfig, device: torch.device
) -> dict[str, torch.Tensor]:
    clip = model.clip
    n = len(batch)
    captions = [e.caption for e in batch]
    twins = [e for e in batch if e.twin]
    texts = captions + [e.variant for e in batch] + [e.twin for e in twins] + list(REFERENCE_PAIR)
    # every text padded to the same length, so that sequences compare position by position
    ids = tokenizer(
        texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids.to(device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if cfg.amp else nullcontext()
    with amp:
        out = clip.text_model(input_ids=ids)
        text_emb = clip.text_projection(out.pooler_output)
        image_emb = clip.visual_projection(
            clip.vision_model(pixel_values=torch.stack([e.image for e in batch]).to(device)).pooler_output
        )
    hidden, text_emb, image_emb = out.last_hidden_state.float(), text_emb.float(), image_emb.float()
    # 1. contrastive, the variants that changed an attribute as extra (false) captions for every image
    img, txt = F.normalize(image_emb, dim=-1), F.normalize(text_emb, dim=-1)
    neg = [n + i for i, e in enumerate(batch) if e.changed]
    cands = txt[list(range(n)) + neg]
    cand_texts = captions + [texts[j] for j in neg]
    scale = clip.logit_scale.float().exp()
    logits = scale * img @ cands.T
    same = torch.tensor([[a == b for b in cand_texts] for a in captions], device=device, dtype=torch.float32)
    i2t = F.cross_entropy(logits, same / same.sum(1, keepdim=True))
    t2i = F.cross_entropy(logits[:, :n].T, same[:, :n] / same[:, :n].sum(1, keepdim=True))
    # 2. attribute heads
    image_targets = {
        a: torch.tensor([ATTRIBUTES[a].index(e.labels[a]) for e in batch], device=device) for a in ATTRIBUTES
    }
    text_targets = {a: t.to(device) for a, t in stated_targets(texts).items()}
    # 3. separation of the hidden sequences from their variants, 4. nuisance wording kept close
    reference = sequence_distance(hidden[-2:-1], hidden[-1:]).detach()  # man/woman
    margin = torch.clamp(cfg.margin_ratio * reference, min=cfg.margin, max=max(cfg.margin, cfg.margin_max))
    hinge = F.relu(margin - sequence_distance(hidden[:n], hidden[n : 2 * n]))
    keep = torch.tensor([e.attr != "presentation" for e in batch], device=device)
    sep = (hinge * keep).sum() / keep.sum().clamp(min=1)
    twin_rows = [i for i, e in enumerate(batch) if e.twin]
    nuis = sequence_distance(hidden[twin_rows], hidden[2 * n : -2]).mean() if twin_rows else hidden.new_zeros(())
    return {
        "clip": 0.5 * (i2t + t2i),
        "attr_image": heads_loss(model.image_heads, image_emb, image_targets),
        "attr_text": heads_loss(model.text_heads, text_emb, text_targets),
        "attr_hidden": heads_loss(model.hidden_heads, hidden.mean(1), text_targets),
        "sep": sep,
        "nuisance": nuis,
        "top1": (same[torch.arange(n), logits.argmax(1)] > 0).float().mean().detach(),
        "man_woman": reference[0],
    }


def total_loss(parts: dict[str, torch.Tensor], cfg: TextEncoderConfig) -> torch.Tensor:
    return (
        parts["clip"]
        + cfg.w_attr_image * parts["attr_image"]
        + cfg.w_attr_text * parts["attr_text"]
        + cfg.w_attr_hidden * parts["attr_hidden"]
        + cfg.w_sep * parts["sep"]
        + cfg.w_nuisance * parts["nuisance"]
    )


# --------------------------------------------------------------------------------------------- output
def export(model: Trainee, tokenizer: CLIPTokenizer, folder: Path, info: dict) -> None:
    """``folder`` laid out like the embedded model: ``text_encoder/``, ``tokenizer/``, ``clip/`` (atomic)."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    clip = model.clip
    was = next(clip.parameters()).device
    clip.to("cpu")
    text_encoder_of(clip).save_pretrained(tmp / "text_encoder", safe_serialization=True)
    tokenizer.save_pretrained(tmp / "tokenizer")
    clip.save_pretrained(tmp / "clip", safe_serialization=True)
    tokenizer.save_pretrained(tmp / "clip")
    image_processor().save_pretrained(tmp / "clip")
    clip.to(was)
    for where in (tmp, tmp / "clip"):
        (where / "training.json").write_text(json.dumps(info, indent=1))
    replace_dir(tmp, folder)


def quick_eval(folder: Path) -> dict:
    """The issue's measures on an exported folder, small sizes (about 20 s on one core)."""
    from segakit.eval.text_encoder import load, measure

    te, tok, clip = load(folder)
    rep = measure(te, tok, clip, n_captions=1500, n_images=300)
    return {
        "pair_rel": {k: round(v["relative"], 3) for k, v in rep.pairs.items()},
        "sep_rel": {a: round(rep.separation_ratio(a), 3) for a in rep.separation},
        "zs_auc": {a: round(v["auc"], 3) for a, v in rep.zero_shot.items()},
    }


def require_text_encoder(text_encoder: Path, tokenizer: Path, min_ratio: float, max_nuisance: float) -> None:
    """The U-Net stage's gate: exit with the failed measures unless the text encoder at ``text_encoder`` separates
    every attribute (``segakit.eval.text_encoder.gate``). A U-Net cannot learn words its text encoder drops."""
    from transformers import CLIPTextModel

    from segakit.eval.text_encoder import gate

    if not (Path(text_encoder) / "config.json").is_file():
        raise SystemExit(
            f"no text encoder at {text_encoder} (no config.json); train one with python -m segakit.train.text_encoder."
        )
    te = CLIPTextModel.from_pretrained(text_encoder, dtype=torch.float32, use_safetensors=True).eval()
    result = gate(te, CLIPTokenizer.from_pretrained(tokenizer), min_ratio, max_nuisance)
    if not result.passed:
        raise SystemExit(
            f"the text encoder at {text_encoder} fails the gate (each at least {min_ratio} of man/woman): "
            + ", ".join(result.failures)
            + ". Train one that passes (python -m segakit.train.text_encoder), "
            "or pass --skip_text_encoder_gate true to train on it anyway."
        )
    print(f"text-encoder gate passed: {text_encoder}", flush=True)


def train(cfg: TextEncoderConfig) -> Path:
    device = setup_torch(cfg.device, cfg.threads)
    run = Path(cfg.run) if cfg.run else runs_root() / "text_encoder"
    run.mkdir(parents=True, exist_ok=True)
    tokenizer = CLIPTokenizer.from_pretrained(cfg.tokenizer or _shipped() / "tokenizer")
    torch.manual_seed(cfg.seed)
    clip = load_clip(cfg.init, tokenizer)
    model = Trainee(clip).to(device)
    params = [(n, p) for n, p in model.named_parameters()]
    decay = [p for n, p in params if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in params if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    state = load_checkpoint(run / "ckpt", model, opt)
    step, next_index = (state["step"], state["next_index"]) if state else (0, cfg.data_offset)
    print(
        f"text_encoder: CLIP {sum(p.numel() for p in clip.parameters()) / 1e6:.2f}M params from {cfg.init}, "
        f"{'resuming at step ' + str(step) if state else 'step 0'} -> {run}",
        flush=True,
    )
    metrics = open(run / "metrics.jsonl", "a")
    t_last, seen = time.time(), 0
    deadline = time.time() + cfg.max_minutes * 60 if cfg.max_minutes > 0 else float("inf")
    info = lambda: {"step": step, "max_steps": cfg.max_steps, "init": cfg.init, "config": config_dict(cfg)}  # noqa: E731
    while step < cfg.max_steps:
        lr = lr_at(step, cfg.lr, cfg.warmup, cfg.max_steps, cfg.schedule)
        for g in opt.param_groups:
            g["lr"] = lr
        batch, next_index = examples_at(cfg.seed, next_index, cfg.batch_size, cfg.p_drop)
        parts = losses(model, batch, tokenizer, cfg, device)
        loss = total_loss(parts, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        with torch.no_grad():
            clip.logit_scale.clamp_(0, 4.6052)  # temperature at most 100, as in CLIP
        step += 1
        seen += len(batch)
        stop = time.time() > deadline
        if step % cfg.log_every == 0 or step == cfg.max_steps or stop:
            dt = time.time() - t_last
            vals = {k: round(v.item(), 4) for k, v in parts.items()}
            print(
                f"step {step}/{cfg.max_steps} loss {loss.item():.4f} "
                + " ".join(f"{k} {v:.4f}" for k, v in vals.items())
                + f" lr {lr:.2e}",
                flush=True,
            )
            print(f"  throughput {seen / dt:.1f} samples/s, {dt * len(batch) / max(1, seen):.2f} s/step", flush=True)
            metrics.write(
                json.dumps(
                    {
                        "step": step,
                        "lr": lr,
                        "loss": loss.item(),
                        **vals,
                        "samples_per_s": seen / dt,
                        "time": time.time(),
                    }
                )
                + "\n"
            )
            metrics.flush()
            t_last, seen = time.time(), 0
        if step % cfg.ckpt_every == 0 or step == cfg.max_steps or stop:
            save_checkpoint(
                run / "ckpt",
                model=model.state_dict(),
                optimizer=opt,
                state={"step": step, "next_index": next_index, "config": config_dict(cfg)},
            )
            export(model, tokenizer, run / "model", info())
        if cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.max_steps):
            if step % cfg.ckpt_every:
                export(model, tokenizer, run / "model", info())
            scores = quick_eval(run / "model")
            print("  eval " + json.dumps(scores), flush=True)
            metrics.write(json.dumps({"step": step, **scores}) + "\n")
            metrics.flush()
            t_last = time.time()
        if stop:
            print(
                f"text_encoder: --max_minutes {cfg.max_minutes} reached at step {step}; run again to resume", flush=True
            )
            break
    metrics.close()
    if not (run / "model").is_dir():
        export(model, tokenizer, run / "model", info())
    print(f"text_encoder done at step {step} -> {run / 'model'}", flush=True)
    return run / "model"


def main(argv: list[str] | None = None) -> None:
    train(parse_config(TextEncoderConfig, argv))


if __name__ == "__main__":
    main()
