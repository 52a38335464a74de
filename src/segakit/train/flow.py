"""Recipe: the embedded flow model -- a small diffusers ``SD3Transformer2DModel`` (MMDiT) trained with rectified flow.

Same world, latents and text encoder as the U-Net (``train/unet.py``), so that every study can put the two side by
side. The transformer reads the 16x16x4 latent cache in 2x2 patches (64 image tokens) and the text the way stock
``StableDiffusion3Pipeline`` hands it over when its folder has no T5 (:mod:`segakit.train.flow_text`): the shipped
text encoder in both CLIP slots, ``hidden_states[-2]`` of an exact-identity 5th layer (the 4th layer's output; the
stock 3rd-layer state fails the text-encoder gate on beard), pooled = the end-of-text state, and 256 zero "T5" rows
that training feeds as one row counted 256 times (exactly the stock computation, a third of its cost:
:class:`segakit.core.families.counted_rows.CountedRowAttention`).

Objective (:mod:`segakit.train.flow_model`): ``x_s = (1 - s) x0 + s noise``, the transformer predicts ``noise - x0``
at timestep ``1000 s``, plain MSE; ``s`` logit-normal (SD3's sampling) moved by ``train_shift``; the shipped
``FlowMatchEulerDiscreteScheduler`` samples with ``shift``. Every step draws each row's caption afresh from its
cached labels (``train/recaption.py``); captions are dropped to "" with probability ``p_uncond`` (on top of the
world's own empty captions) for classifier-free guidance. AdamW, warm-up then constant (or cosine) LR, an EMA of the
weights (the EMA is what is exported). The text-encoder gate runs on what the transformer reads.

    python -m segakit.train.flow --threads 1 --run /work/runs/flow          # the real run (run again to resume)
    python -m segakit.train.flow --run /work/runs/flow --export /work/runs/flow/export   # a stock SD3 folder
    python -m segakit.train.flow --max_steps 3 --run /tmp/flow --cache /tmp/cache --layers 1 --heads 2

``SEGAKIT_RUNS`` (default ``runs/embedded``) holds the cache, tokenizer, text encoder and autoencoder, as for the
U-Net (``python -m segakit.train.shipped`` seeds it from the shipped model, then ``python -m segakit.train.cache``).
Writes ``<run>/ckpt`` (model, EMA, optimizer, state), ``<run>/transformer_ema`` (refreshed at each checkpoint),
``<run>/samples/step-*.png`` and ``<run>/metrics.jsonl``. ``scripts/train-flow-gpu.sh`` runs it on a GPU in chunks.
"""

from __future__ import annotations

import json
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, SD3Transformer2DModel
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from segakit.train.cache import open_cache
from segakit.train.checkpoint import load_checkpoint, replace_dir, save_checkpoint
from segakit.train.config import config_dict, lr_at, parse_config, runs_root, setup_torch, text_encoder_path, vae_path
from segakit.train.data import grid, to_pil
from segakit.train.flow_model import build_scheduler, build_transformer, flow_pair, noise_levels, use_repeated_row
from segakit.train.flow_text import T5_ROWS, encode, sd3_text_encoder, with_t5_rows
from segakit.train.log import log_step
from segakit.train.recaption import fresh_caption
from segakit.train.unet import EMA, PREVIEW_PROMPTS, batch_indices


@dataclass
class FlowConfig:
    run: str = ""  # default: $SEGAKIT_RUNS/flow
    cache: str = ""  # default: $SEGAKIT_RUNS/cache (its latents; captions are drawn afresh from its labels)
    vae: str = ""  # for preview samples; default: config.vae_path
    text_encoder: str = ""  # the U-Net's CLIPTextModel; default: config.text_encoder_path
    tokenizer: str = ""  # default: $SEGAKIT_RUNS/tokenizer
    export: str = ""  # write the run's EMA as a stock StableDiffusion3Pipeline folder here, then stop
    init: str = ""  # start a new run from these transformer weights (e.g. the shipped assets/embedded-flow/transformer)
    init_step: int = -1  # the step those weights stand for (-1: the step recorded beside them in segakit.json, else 0)
    ship: str = ""  # write the run's EMA as the shipped part of "embedded-flow" here (float16 transformer), then stop
    overwrite: bool = False  # let --ship replace a shipped folder
    device: str = "cpu"
    threads: int = 0
    amp: bool = False
    seed: int = 0
    # model: 4 joint blocks, 3 heads of 64 (192 wide), ~5.2M parameters
    layers: int = 4
    heads: int = 3
    head_dim: int = 64
    # rectified flow
    timestep_sampling: str = "logit_normal"  # or "uniform"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    train_shift: float = 1.0  # the shift map applied to the training noise levels
    shift: float = 1.0  # the shipped sampler's shift (SD3 uses 3.0 for 1024 px; these latents are 16x16)
    # optimisation
    batch_size: int = 64
    max_steps: int = 12_000
    lr: float = 3e-4
    warmup: int = 500
    schedule: str = "const"  # const, cosine, or wsd (constant, then linear to 0.1x over the last --decay_steps)
    decay_steps: int = 2_500
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    p_uncond: float = 0.1
    ema_decay: float = 0.9995
    # the text-encoder gate on the hidden states the transformer reads
    skip_text_encoder_gate: bool = False
    gate_min_ratio: float = 0.4
    gate_max_nuisance: float = 0.1
    # bookkeeping
    max_minutes: float = 0.0  # stop (checkpoint and export) after this much wall time in this run; 0 = no limit
    log_every: int = 25
    ckpt_every: int = 100
    sample_every: int = 500
    sample_steps: int = 28
    guidance_scale: float = 7.0


@dataclass
class Text:
    """The frozen text side: the SD3 slot built from the U-Net's text encoder, and its tokenizer."""

    slot: CLIPTextModelWithProjection
    tokenizer: CLIPTokenizer

    def rows(self, captions: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """What the transformer reads for ``captions``: the CLIP rows plus one zero row standing for SD3's 256."""
        tokens, pooled = encode(self.slot, self.tokenizer, captions, device)
        return with_t5_rows(tokens, 1), pooled


def load_text(cfg: FlowConfig, device: torch.device) -> Text:
    root = runs_root()
    te = CLIPTextModel.from_pretrained(
        cfg.text_encoder or text_encoder_path(root), dtype=torch.float32, use_safetensors=True
    )
    slot = sd3_text_encoder(te).to(device).eval().requires_grad_(False)
    return Text(slot, CLIPTokenizer.from_pretrained(cfg.tokenizer or root / "tokenizer"))


class SlotHidden(torch.nn.Module):
    """``slot(ids)[0]`` is SD3's per-token embedding (``hidden_states[-2]``): what the text-encoder measures read."""

    def __init__(self, slot: CLIPTextModelWithProjection) -> None:
        super().__init__()
        self.slot = slot

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.slot(ids, output_hidden_states=True).hidden_states[-2],)


def require_gate(text: Text, cfg: FlowConfig) -> None:
    """Refuse a text encoder whose SD3 embedding cannot tell the attributes apart (``segakit.eval.text_encoder.gate``)."""
    from segakit.eval.text_encoder import gate

    result = gate(SlotHidden(text.slot.cpu()), text.tokenizer, cfg.gate_min_ratio, cfg.gate_max_nuisance)
    if not result.passed:
        raise SystemExit(
            "the text encoder's SD3 embedding fails the gate (each at least "
            f"{cfg.gate_min_ratio} of man/woman): "
            + ", ".join(result.failures)
            + ". Pass --skip_text_encoder_gate true to train on it anyway."
        )
    print("text-encoder gate passed (SD3 slot, hidden_states[-2])", flush=True)


def new_model(cfg: FlowConfig, text_dim: int, device: torch.device) -> SD3Transformer2DModel:
    model = build_transformer(cfg.layers, cfg.heads, cfg.head_dim, text_dim, text_dim).to(device)
    use_repeated_row(model, T5_ROWS)
    return model


@torch.no_grad()
def sample(
    model: SD3Transformer2DModel, text: Text, prompts: list[str], cfg: FlowConfig, device: torch.device, seed: int = 0
) -> torch.Tensor:
    """Euler samples (N, 4, 16, 16) of ``prompts`` with classifier-free guidance, as SD3's pipeline samples them."""
    cond, pooled = text.rows(prompts, device)
    ucond, upooled = text.rows([""] * len(prompts), device)
    sched = build_scheduler(cfg.shift)
    sched.set_timesteps(cfg.sample_steps)
    x = torch.randn(len(prompts), 4, 16, 16, generator=torch.Generator().manual_seed(seed)).to(device)
    was_training = model.training
    model.eval()
    for t in sched.timesteps:
        v_u, v_c = model(
            torch.cat([x, x]),
            encoder_hidden_states=torch.cat([ucond, cond]),
            pooled_projections=torch.cat([upooled, pooled]),
            timestep=t.expand(2 * len(x)).to(device),
        ).sample.chunk(2)
        x = sched.step(v_u + cfg.guidance_scale * (v_c - v_u), t, x).prev_sample
    model.train(was_training)
    return x


def preview(model: SD3Transformer2DModel, text: Text, cfg: FlowConfig, path: Path, device: torch.device) -> None:
    """A grid of :data:`PREVIEW_PROMPTS`, two seeds (rows), decoded by the autoencoder."""
    vae = AutoencoderKL.from_pretrained(cfg.vae or vae_path(runs_root()), dtype=torch.float32).to(device).eval()
    x = sample(model, text, PREVIEW_PROMPTS * 2, cfg, device)
    with torch.no_grad():
        images = vae.decode(x / vae.config.scaling_factor).sample
    path.parent.mkdir(parents=True, exist_ok=True)
    grid(to_pil(images), cols=len(PREVIEW_PROMPTS), scale=2).save(path)


def export_ema(ema: EMA, cfg: FlowConfig, text_dim: int, run: Path, step: int) -> None:
    """The EMA as a diffusers transformer folder at ``<run>/transformer_ema`` (with ``training.json``)."""
    model = build_transformer(cfg.layers, cfg.heads, cfg.head_dim, text_dim, text_dim)
    model.load_state_dict(ema.shadow)
    tmp = run / "transformer_ema.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    (tmp / "training.json").write_text(json.dumps({"step": step, "config": config_dict(cfg)}, indent=1))
    replace_dir(tmp, run / "transformer_ema")


def check_config(cfg: FlowConfig) -> None:
    """One sentence per bad value, naming the flag and what it allows."""
    if cfg.timestep_sampling not in ("logit_normal", "uniform"):
        raise SystemExit(f"--timestep_sampling must be logit_normal or uniform, got {cfg.timestep_sampling!r}.")
    for name in ("shift", "train_shift", "logit_std"):
        if getattr(cfg, name) <= 0:
            raise SystemExit(f"--{name} must be above 0, got {getattr(cfg, name)}.")
    if cfg.schedule not in ("const", "cosine", "wsd"):
        raise SystemExit(f"--schedule must be const, cosine or wsd, got {cfg.schedule!r}.")
    if cfg.schedule == "wsd" and not 0 < cfg.decay_steps <= cfg.max_steps:
        raise SystemExit(f"--decay_steps must be between 1 and --max_steps ({cfg.max_steps}), got {cfg.decay_steps}.")
    if not 0 <= cfg.p_uncond < 1:
        raise SystemExit(f"--p_uncond must be in [0, 1), got {cfg.p_uncond}.")


def init_from(model: SD3Transformer2DModel, ema: EMA, cfg: FlowConfig, device: torch.device) -> int:
    """Load ``cfg.init``'s weights into a new run (model and EMA; the optimizer starts afresh): how a run continues
    on a machine that has only the shipped model. Returns the step to continue from."""
    folder = Path(cfg.init)
    if not (folder / "config.json").is_file():
        raise SystemExit(f"--init {str(folder)!r} is not a transformer folder (config.json and safetensors).")
    weights = SD3Transformer2DModel.from_pretrained(folder, dtype=torch.float32, use_safetensors=True).state_dict()
    model.load_state_dict(weights)
    ema.shadow = {k: v.detach().clone().to(device) for k, v in model.state_dict().items() if k in ema.shadow}
    if cfg.init_step >= 0:
        return cfg.init_step
    info = folder.parent / "segakit.json"
    if info.is_file():
        return int(json.loads(info.read_text()).get("training", {}).get("flow", {}).get("step", 0))
    return 0


def train(cfg: FlowConfig) -> Path:
    check_config(cfg)
    device = setup_torch(cfg.device, cfg.threads)
    root = runs_root()
    run = Path(cfg.run) if cfg.run else root / "flow"
    text = load_text(cfg, torch.device("cpu"))
    if not cfg.skip_text_encoder_gate:
        require_gate(text, cfg)
    text.slot.to(device)
    run.mkdir(parents=True, exist_ok=True)
    cache = open_cache(Path(cfg.cache) if cfg.cache else root / "cache")
    if device.type == "cuda":
        cache = cache.preload(device)
    dim = 2 * text.slot.config.hidden_size
    torch.manual_seed(cfg.seed)
    model = new_model(cfg, dim, device)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    ema = EMA(model, cfg.ema_decay)
    ema.shadow = {k: v.to(device) for k, v in ema.shadow.items()}
    state = load_checkpoint(run / "ckpt", model, opt, ema.shadow)
    step = state["step"] if state else 0
    if not state and cfg.init:
        step = init_from(model, ema, cfg, device)
    build_scheduler(cfg.shift).save_pretrained(run / "scheduler")
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"flow: {n_params / 1e6:.2f}M params, cache {len(cache)} samples, "
        f"{f'resuming at step {step}' if state else f'from --init at step {step}' if cfg.init else 'from scratch'} -> {run}",
        flush=True,
    )
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if cfg.amp else nullcontext()
    empty_rows, empty_pooled = text.rows([""], device)
    metrics = open(run / "metrics.jsonl", "a")
    t_last, seen, loss_sum, loss_n = time.time(), 0, 0.0, 0
    deadline = time.time() + cfg.max_minutes * 60 if cfg.max_minutes > 0 else float("inf")
    while step < cfg.max_steps:
        lr = lr_at(step, cfg.lr, cfg.warmup, cfg.max_steps, cfg.schedule, decay_steps=cfg.decay_steps)
        for group in opt.param_groups:
            group["lr"] = lr
        rows = batch_indices(step, cfg.batch_size, len(cache), cfg.seed)
        latents = cache.rows(rows)[0].to(device)
        rng = np.random.default_rng([cfg.seed, step, 33])
        tokens, pooled = text.rows([fresh_caption(r, rng) for r in cache.labels(rows)], device)
        g = torch.Generator().manual_seed(cfg.seed * 7_919 + step)  # noise, levels and dropout of this step
        noise = torch.randn(latents.shape, generator=g).to(device)
        s = noise_levels(len(latents), cfg.timestep_sampling, cfg.train_shift, g, cfg.logit_mean, cfg.logit_std).to(
            device
        )
        drop = (torch.rand(len(latents), generator=g) < cfg.p_uncond).to(device)
        tokens = torch.where(drop[:, None, None], empty_rows, tokens)
        pooled = torch.where(drop[:, None], empty_pooled, pooled)
        noisy, velocity = flow_pair(latents, noise, s)
        with amp:
            pred = model(noisy, encoder_hidden_states=tokens, pooled_projections=pooled, timestep=1000 * s).sample
        loss = (pred.float() - velocity).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        ema.update(model, step)
        step += 1
        seen += len(latents)
        loss_sum, loss_n = loss_sum + loss.detach(), loss_n + 1
        stop = time.time() > deadline
        if step % cfg.log_every == 0 or step == cfg.max_steps or stop:
            log_step(metrics, step, cfg.max_steps, float(loss_sum) / loss_n, lr, step * cfg.batch_size / len(cache), seen,
                     loss_n, time.time() - t_last)  # fmt: skip
            t_last, seen, loss_sum, loss_n = time.time(), 0, 0.0, 0
        if step % cfg.ckpt_every == 0 or step == cfg.max_steps or stop:
            save_checkpoint(
                run / "ckpt",
                model=model.state_dict(),
                ema=ema.shadow,
                optimizer=opt,
                state={"step": step, "config": config_dict(cfg)},
            )
            export_ema(ema, cfg, dim, run, step)
        if step % cfg.sample_every == 0 or step == cfg.max_steps:
            ema_model = new_model(cfg, dim, device)
            ema_model.load_state_dict(ema.shadow)
            path = run / "samples" / f"step-{step:07d}.png"
            preview(ema_model, text, cfg, path, device)
            print(f"  samples -> {path}", flush=True)
            t_last = time.time()
        if stop:
            print(f"flow: --max_minutes {cfg.max_minutes} reached at step {step}; run again to resume", flush=True)
            break
    metrics.close()
    if not (run / "transformer_ema").is_dir():
        export_ema(ema, cfg, dim, run, step)
    print(f"flow done at step {step} -> {run / 'transformer_ema'}", flush=True)
    return run / "transformer_ema"


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(FlowConfig, argv)
    if cfg.export:
        from segakit.train.flow_export import export

        print(f"exported -> {export(cfg)}", flush=True)
        return
    if cfg.ship:
        from segakit.train.flow_export import ship

        print(f"shipped -> {ship(cfg)}", flush=True)
        return
    train(cfg)


if __name__ == "__main__":
    main()
