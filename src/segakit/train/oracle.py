"""Train the faces-world attribute oracle (one readable file, nanoGPT style).

    python -m segakit.train.oracle                       # defaults below; resumes from out_dir if a checkpoint exists
    python -m segakit.train.oracle --max_steps=200 --out_dir=out/oracle-smoke
    python -m segakit.train.oracle --export=src/segakit/assets/oracle/oracle.safetensors --overwrite=true

Data is rendered on the fly: step k uses samples k*B .. (k+1)*B-1 of ``train_seed`` (so a resumed run sees
exactly the data it would have seen), half of them drawn from the world's priors and half with every
attribute drawn uniformly (so the oracle cannot lean on correlations such as beard -> man). Every batch
goes through :func:`segakit.world.oracle.augment`. Checkpoints are safetensors (weights + AdamW state).
Prints a loss line every ``log_every`` steps and a throughput line; evaluates on fresh seeds.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from segakit.train.checkpoint import check_export


@dataclass
class TrainConfig:
    out_dir: str = "out/oracle"
    export: str = ""  # also write fp16 weights here at the end (e.g. src/segakit/assets/oracle/oracle.safetensors)
    overwrite: bool = False  # --overwrite true: replace an existing --export (the output policy: never unasked)
    init: str = (
        ""  # start from these oracle weights (a fine-tune) instead of random ones; "shipped" = the packaged oracle
    )
    autoencoder: str = ""  # diffusers AutoencoderKL folder: a share of the augmented images go through its round trip
    train_seed: int = 1
    eval_seed: int = 100_003  # fresh: never used for training
    batch_size: int = 64
    max_steps: int = 3000
    lr: float = 2e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    weight_decay: float = 5e-4
    p_uniform: float = 0.5  # share of each batch with attributes drawn uniformly instead of from the priors
    p_augment: float = 0.8  # share of each batch passed through augment()
    log_every: int = 25
    eval_every: int = 500
    eval_n: int = 500
    ckpt_every: int = 100
    threads: int = 1
    device: str = "cpu"
    resume: bool = True
    widths: tuple = (24, 32, 64, 128)
    feature_dim: int = 256


def parse_args(argv: list[str]) -> TrainConfig:
    """``--key=value`` overrides of the dataclass fields (nanoGPT's configurator, without exec)."""
    cfg = TrainConfig()
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            raise SystemExit(
                f"expected --key=value, got {arg!r}; keys: {', '.join(f.name for f in dataclasses.fields(cfg))}"
            )
        key, val = arg[2:].split("=", 1)
        if not hasattr(cfg, key):
            raise SystemExit(f"unknown config key {key!r}; keys: {', '.join(f.name for f in dataclasses.fields(cfg))}")
        cur = getattr(cfg, key)
        if isinstance(cur, bool):
            new = val.lower() in ("1", "true", "yes")
        elif isinstance(cur, tuple):
            new = tuple(int(v) for v in val.split(","))
        else:
            new = type(cur)(val)
        setattr(cfg, key, new)
    return cfg


def uniform_fixed(rng: np.random.Generator) -> dict:
    """Every attribute drawn uniformly (bangs only where there is hair)."""
    from segakit.world.schema import ATTRIBUTES

    fixed = {a: v[int(rng.integers(len(v)))] for a, v in ATTRIBUTES.items()}
    if fixed["hair_style"] == "bald":
        fixed["bangs"] = False
    return fixed


def batch(cfg: TrainConfig, step: int) -> tuple[torch.Tensor, list[dict]]:
    from segakit.world.dataset import rng_for
    from segakit.world.render import render
    from segakit.world.schema import sample_face

    imgs, labels = [], []
    for i in range(step * cfg.batch_size, (step + 1) * cfg.batch_size):
        rng = rng_for(cfg.train_seed, i)
        fixed = uniform_fixed(rng) if rng.random() < cfg.p_uniform else None
        face = sample_face(rng, fixed)
        imgs.append(np.asarray(render(face)))
        labels.append(face.labels())
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0
    return x, labels


def lr_at(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, t)))


def save_checkpoint(path: Path, model, opt, step: int, cfg: TrainConfig) -> None:
    from safetensors.torch import save

    from segakit.core.atomic import atomic_open

    tensors = {f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            tensors[f"opt.{i}.{k}"] = v.contiguous() if torch.is_tensor(v) else torch.tensor(v)
    meta = {"step": str(step), "config": json.dumps(dataclasses.asdict(cfg))}
    with atomic_open(path, "wb") as fh:
        fh.write(save(tensors, metadata=meta))


def load_checkpoint(path: Path, model, opt) -> int:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as fh:
        step = int(fh.metadata()["step"])
    tensors = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    sd = opt.state_dict()
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, i, name = k.split(".", 2)
            state.setdefault(int(i), {})[name] = v
    sd["state"] = state
    opt.load_state_dict(sd)
    return step


def autoencoder_roundtrip(folder: str, device: str):
    """Images in [0,1] -> the autoencoder's reconstructions in [0,1] (posterior mean, as generation decodes)."""
    from diffusers import AutoencoderKL

    from segakit.core.autoencoder import autoencoder_round_trip

    vae = AutoencoderKL.from_pretrained(folder, torch_dtype=torch.float32).to(device).eval()
    return lambda x: autoencoder_round_trip(vae, x).to(x.device)


def evaluate(model, cfg: TrainConfig, roundtrip=None) -> dict[str, dict[str, float]]:
    from segakit.world.oracle import Oracle, held_out_accuracy

    model.eval()
    try:
        return held_out_accuracy(Oracle(model, cfg.device), n=cfg.eval_n, seed=cfg.eval_seed, autoencoder=roundtrip)
    finally:
        model.train()


def fmt_acc(acc: dict[str, float]) -> str:
    return " ".join(f"{a[:6]}={v * 100:.1f}" for a, v in acc.items())


def train(cfg: TrainConfig) -> Path:
    from segakit.world.oracle import IGNORE, Oracle, OracleConfig, OracleNet, augment, encode_labels

    check_export(cfg.export, cfg.overwrite)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.train_seed)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "ckpt.safetensors"

    model = OracleNet(OracleConfig(widths=tuple(cfg.widths), feature_dim=cfg.feature_dim)).to(cfg.device)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    step = 0
    if cfg.resume and ckpt.exists():
        step = load_checkpoint(ckpt, model, opt)
        print(f"resumed from {ckpt} at step {step}")
    elif cfg.init:
        model.load_state_dict(Oracle.load(None if cfg.init == "shipped" else cfg.init).net.state_dict())
        print(f"initialised from {cfg.init}")
    roundtrip = autoencoder_roundtrip(cfg.autoencoder, cfg.device) if cfg.autoencoder else None
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"oracle: {n_params / 1e6:.2f}M parameters, batch {cfg.batch_size}, {cfg.max_steps} steps, threads {cfg.threads}"
    )

    gen = torch.Generator().manual_seed(cfg.train_seed * 1_000_003 + step)
    t0, seen, t_data = time.perf_counter(), 0, 0.0
    model.train()
    while step < cfg.max_steps:
        ta = time.perf_counter()
        x, labels = batch(cfg, step)
        n_aug = int(round(cfg.p_augment * x.shape[0]))
        if n_aug:
            x[:n_aug] = augment(x[:n_aug], gen, autoencoder=roundtrip)
        y = encode_labels(labels)
        t_data += time.perf_counter() - ta
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, step)
        logits = model(x.to(cfg.device))
        loss = sum(F.cross_entropy(logits[a], y[a].to(cfg.device), ignore_index=IGNORE) for a in logits)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        seen += x.shape[0]
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            dt = time.perf_counter() - t0
            print(f"step {step:5d} | loss {loss.item():.4f} | lr {lr_at(cfg, step - 1):.2e}")
            print(f"step {step:5d} | {seen / dt:.1f} img/s ({t_data / dt * 100:.0f}% rendering+augmenting)", flush=True)
            t0, seen, t_data = time.perf_counter(), 0, 0.0
        if step % cfg.ckpt_every == 0 or step == cfg.max_steps:
            save_checkpoint(ckpt, model, opt, step, cfg)
        if cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.max_steps):
            acc = evaluate(model, cfg, roundtrip)
            for kind, values in acc.items():
                print(f"eval {step:5d} | {kind:<11} {fmt_acc(values)}", flush=True)
            t0, seen, t_data = time.perf_counter(), 0, 0.0

    weights = out / "oracle.safetensors"
    model.eval()
    Oracle(model, cfg.device).save(weights)
    if cfg.export:
        Oracle(model, cfg.device).save(cfg.export)
        print(f"exported {cfg.export}")
    print(f"wrote {weights}")
    return weights


if __name__ == "__main__":
    train(parse_args(sys.argv[1:]))
