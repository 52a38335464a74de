"""Recipe: the embedded model's denoiser -- a small diffusers ``UNet2DConditionModel`` on the latent cache.

Epsilon prediction on 16x16x4 latents, cross-attention to the text tower's per-token hidden states (as in
SD), trained with the noise schedule of the ``DDIMScheduler`` saved beside it (SD's scaled-linear betas) and
Min-SNR-5 loss weighting (faster convergence at no cost per step).
Captions are dropped (replaced by the empty prompt) with probability ``p_uncond`` on top of the world's own
10% empty captions, for classifier-free guidance. AdamW, warm-up then constant (or cosine) LR, an EMA of
the weights (the EMA is what ships). Checkpoints every ``ckpt_every`` steps; a killed run resumes there.

With ``--fresh_captions true`` each row's caption is drawn afresh every step from its cached labels
(``train/recaption.py``) and encoded by the frozen text encoder, instead of the one caption the cache
stored for it. The stage first checks its text encoder (``segakit.eval.text_encoder.gate``) and refuses one
that cannot tell the attributes apart, unless ``--skip_text_encoder_gate true``.

Attention only at 8x8 and 4x4: at 16x16 (256 tokens) it would cost most of the step on a CPU.

    python -m segakit.train.unet                        # the real run (resumes)
    python -m segakit.train.unet --max_steps 3 --run /tmp/unet --cache /tmp/cache --block_out_channels 32,32,32

A run can start from trained weights instead of from scratch: ``--init embedded`` (the shipped U-Net) or
``--init FOLDER`` (any diffusers U-Net folder of the same config). The model and its EMA both start there;
the learning rate warms up again (the optimizer's moments are not shipped), and ``training.json`` counts the
earlier steps in ``total_steps``. ``python -m segakit.train.shipped`` seeds a runs folder with the other
shipped parts, so that a session without the earlier run's folder continues the model where it stopped.

Writes ``<run>/ckpt`` (model, EMA, optimizer, state), ``<run>/unet_ema`` (the EMA as a diffusers folder,
refreshed at each checkpoint), ``<run>/scheduler``, ``<run>/samples/step-*.png`` and ``<run>/metrics.jsonl``.
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
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from segakit.train.cache import open_cache
from segakit.train.checkpoint import load_checkpoint, replace_dir, save_checkpoint
from segakit.train.config import config_dict, lr_at, parse_config, runs_root, setup_torch, text_encoder_path, vae_path
from segakit.train.data import grid, to_pil
from segakit.train.log import log_step

PREVIEW_PROMPTS = [
    "a face of a person",
    "a smiling woman with glasses",
    "a bald man with a beard",
    "a doctor",
    "a nurse",
    "a person wearing a red hat",
    "a zombie",
    "a frowning man with curly red hair",
]


@dataclass
class UnetConfig:
    run: str = ""  # default: $SEGAKIT_RUNS/unet
    cache: str = ""  # default: $SEGAKIT_RUNS/cache
    vae: str = ""  # for preview samples; default: $SEGAKIT_RUNS/decoder/final, else autoencoder/final
    text_encoder: str = ""  # for preview samples, the gate and fresh captions; default: config.text_encoder_path
    tokenizer: str = ""  # default: $SEGAKIT_RUNS/tokenizer
    init: str = ""  # start from these U-Net weights ("embedded" or a diffusers folder) when no checkpoint exists
    device: str = "cpu"
    threads: int = 0
    amp: bool = False
    seed: int = 0
    # model
    block_out_channels: tuple[int, ...] = (64, 128, 128)
    layers_per_block: int = 1
    attention_head_dim: int = 32
    norm_num_groups: int = 32
    # noise schedule (SD's)
    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"
    # optimisation
    batch_size: int = 64
    max_steps: int = 60_000
    lr: float = 3e-4
    warmup: int = 300
    schedule: str = "const"
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    p_uncond: float = 0.05
    fresh_captions: bool = (
        False  # draw each row's caption afresh every step from its labels, encoded by the frozen text encoder
    )
    snr_gamma: float = 5.0  # Min-SNR-gamma loss weighting (Hang et al. 2023); 0 = plain MSE
    ema_decay: float = 0.9995
    # the text-encoder gate (issue 15): a fresh or resumed run refuses a text encoder that drops attributes
    skip_text_encoder_gate: bool = False
    gate_min_ratio: float = 0.4  # every attribute's separation and prompt distance, relative to man/woman
    gate_max_nuisance: float = 0.1  # "a photo of" vs "a drawing of", relative to man/woman
    # bookkeeping
    max_minutes: float = 0.0  # stop (checkpoint and export) after this much wall time in this run; 0 = no limit
    log_every: int = 25
    ckpt_every: int = 250
    sample_every: int = 2000
    sample_steps: int = 25
    guidance_scale: float = 7.5


def build_model(cfg: UnetConfig, cross_attention_dim: int) -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=cfg.block_out_channels,
        layers_per_block=cfg.layers_per_block,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (len(cfg.block_out_channels) - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (len(cfg.block_out_channels) - 1) + ("UpBlock2D",),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=cfg.attention_head_dim,
        norm_num_groups=cfg.norm_num_groups,
    )


def build_scheduler(cfg: UnetConfig) -> DDIMScheduler:
    """The sampler that ships with the model; its betas are also the training noise schedule."""
    return DDIMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_start=cfg.beta_start,
        beta_end=cfg.beta_end,
        beta_schedule=cfg.beta_schedule,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
    )


class EMA:
    """Exponential moving average of the trainable weights (decay warms up as (1+t)/(10+t))."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        live = model.state_dict()
        floats = [k for k, v in live.items() if v.dtype.is_floating_point]
        torch._foreach_lerp_([self.shadow[k] for k in floats], [live[k].float() for k in floats], 1 - d)
        for k, v in live.items():
            if not v.dtype.is_floating_point:
                self.shadow[k].copy_(v)


def batch_indices(step: int, batch_size: int, n: int, seed: int) -> torch.Tensor:
    """Rows of step ``step``: consecutive slices of one random permutation per epoch (resumable)."""
    first, last = step * batch_size, (step + 1) * batch_size
    out = []
    pos = first
    while pos < last:
        epoch, offset = divmod(pos, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        take = min(last - pos, n - offset)
        out.append(perm[offset : offset + take])
        pos += take
    return torch.cat(out)


@torch.no_grad()
def sample_grid(
    unet: UNet2DConditionModel, cfg: UnetConfig, path: Path, device: torch.device, n_seeds: int = 2
) -> None:
    """DDIM samples of :data:`PREVIEW_PROMPTS` (one row per seed) with classifier-free guidance."""
    root = runs_root()
    tok = CLIPTokenizer.from_pretrained(cfg.tokenizer or root / "tokenizer")
    text = (
        CLIPTextModel.from_pretrained(cfg.text_encoder or text_encoder_path(root), torch_dtype=torch.float32)
        .to(device)
        .eval()
    )
    vae = AutoencoderKL.from_pretrained(cfg.vae or vae_path(root), torch_dtype=torch.float32).to(device).eval()
    prompts = PREVIEW_PROMPTS * n_seeds
    ids = tok(
        prompts + [""], padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    hidden = text(ids.to(device))[0]
    cond, uncond = hidden[:-1], hidden[-1:].expand(len(prompts), -1, -1)
    sched = build_scheduler(cfg)
    sched.set_timesteps(cfg.sample_steps)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(len(prompts), 4, 16, 16, generator=g).to(device)
    was_training = unet.training
    unet.eval()
    for t in sched.timesteps:
        eps_u, eps_c = unet(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([uncond, cond])).sample.chunk(2)
        x = sched.step(eps_u + cfg.guidance_scale * (eps_c - eps_u), t, x).prev_sample
    unet.train(was_training)
    images = vae.decode(x / vae.config.scaling_factor).sample
    path.parent.mkdir(parents=True, exist_ok=True)
    grid(to_pil(images), cols=len(PREVIEW_PROMPTS), scale=2).save(path)


def init_folder(init: str) -> Path:
    """``"embedded"`` -> the shipped U-Net's folder; anything else is a diffusers U-Net folder."""
    if init == "embedded":
        from segakit.train.embedded import DEFAULT_OUT

        return DEFAULT_OUT / "unet"
    return Path(init)


def earlier_steps(folder: Path) -> int:
    """Training steps behind the weights in ``folder``: its ``training.json``, or the shipped ``segakit.json``."""
    own = folder / "training.json"
    if own.is_file():
        info = json.loads(own.read_text())
        return int(info.get("total_steps", info.get("step", 0)))
    shipped = folder.parent / "segakit.json"
    if shipped.is_file():
        unet = json.loads(shipped.read_text()).get("training", {}).get("unet", {})
        return int(unet.get("total_steps", unet.get("step", 0)))
    return 0


def load_init(unet: UNet2DConditionModel, ema: EMA, cfg: UnetConfig) -> dict:
    """Copy the weights of ``cfg.init`` into the model and its EMA; returns the provenance to record."""
    folder = init_folder(cfg.init)
    if not (folder / "config.json").is_file():
        raise SystemExit(f"--init {cfg.init!r}: {folder} is not a diffusers U-Net folder (no config.json).")
    source = UNet2DConditionModel.from_pretrained(folder, torch_dtype=torch.float32)
    ours = {k: v for k, v in unet.config.items() if not k.startswith("_")}
    differ = [k for k, v in ours.items() if k in source.config and _plain(source.config[k]) != _plain(v)]
    if differ:
        raise SystemExit(f"--init {cfg.init!r}: its U-Net config differs from this recipe's in {', '.join(differ)}.")
    weights = source.state_dict()
    unet.load_state_dict(weights)
    for k, v in weights.items():
        ema.shadow[k].copy_(v)
    return {"from": cfg.init, "steps": earlier_steps(folder)}


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def export_ema(
    ema: EMA, cfg: UnetConfig, cross_attention_dim: int, run: Path, step: int, init: dict | None = None
) -> None:
    model = build_model(cfg, cross_attention_dim)
    model.load_state_dict(ema.shadow)
    tmp = run / "unet_ema.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    info = {"step": step, "total_steps": step + (init or {}).get("steps", 0), "init": init, "config": config_dict(cfg)}
    (tmp / "training.json").write_text(json.dumps(info, indent=1))
    replace_dir(tmp, run / "unet_ema")


def train(cfg: UnetConfig) -> Path:
    device = setup_torch(cfg.device, cfg.threads)
    root = runs_root()
    run = Path(cfg.run) if cfg.run else root / "unet"
    if not cfg.skip_text_encoder_gate:
        from segakit.train.text_encoder import require_text_encoder

        require_text_encoder(
            Path(cfg.text_encoder or text_encoder_path(root)),
            Path(cfg.tokenizer or root / "tokenizer"),
            cfg.gate_min_ratio,
            cfg.gate_max_nuisance,
        )
    run.mkdir(parents=True, exist_ok=True)
    cache = open_cache(Path(cfg.cache) if cfg.cache else root / "cache")
    if device.type == "cuda":  # the whole cache in GPU memory: batches are gathered there, no host round trip
        cache = cache.preload(device)
    dim = cache.empty.shape[-1]
    torch.manual_seed(cfg.seed)
    unet = build_model(cfg, dim).to(device)
    sched = build_scheduler(cfg)
    sched.save_pretrained(run / "scheduler")
    alphas_cumprod = sched.alphas_cumprod.to(device)
    decay = [p for n, p in unet.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in unet.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    ema = EMA(unet, cfg.ema_decay)
    ema.shadow = {k: v.to(device) for k, v in ema.shadow.items()}
    state = load_checkpoint(run / "ckpt", unet, opt, ema.shadow)
    step = state["step"] if state else 0
    init = state.get("init") if state else (load_init(unet, ema, cfg) if cfg.init else None)
    n_params = sum(p.numel() for p in unet.parameters())
    start = (
        f"resuming at step {step}"
        if state
        else f"from {init['from']} ({init['steps']} earlier steps)"
        if init
        else "from scratch"
    )
    print(f"unet: {n_params / 1e6:.2f}M params, cache {len(cache)} samples, {start} -> {run}", flush=True)
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if cfg.amp else nullcontext()
    empty = cache.empty.to(device)
    if cfg.fresh_captions:  # the frozen text encoder, to encode each step's new captions
        from segakit.train.recaption import encode, fresh_caption

        tok = CLIPTokenizer.from_pretrained(cfg.tokenizer or root / "tokenizer")
        text = (
            CLIPTextModel.from_pretrained(cfg.text_encoder or text_encoder_path(root), torch_dtype=torch.float32)
            .to(device)
            .eval()
        )
        text.requires_grad_(False)
    metrics = open(run / "metrics.jsonl", "a")
    t_last, seen, loss_sum, loss_n = time.time(), 0, 0.0, 0
    deadline = time.time() + cfg.max_minutes * 60 if cfg.max_minutes > 0 else float("inf")
    while step < cfg.max_steps:
        lr = lr_at(step, cfg.lr, cfg.warmup, cfg.max_steps, cfg.schedule)
        for group in opt.param_groups:
            group["lr"] = lr
        rows = batch_indices(step, cfg.batch_size, len(cache), cfg.seed)
        latents, hidden = cache.rows(rows)
        latents, hidden = latents.to(device), hidden.to(device)
        if cfg.fresh_captions:
            rng = np.random.default_rng([cfg.seed, step, 15])
            hidden = encode(text, tok, [fresh_caption(r, rng) for r in cache.labels(rows)], device)
        g = torch.Generator().manual_seed(cfg.seed * 7_919 + step)  # noise, timesteps and dropout of this step
        noise = torch.randn(latents.shape, generator=g).to(device)
        t = torch.randint(0, cfg.num_train_timesteps, (latents.shape[0],), generator=g).to(device)
        drop = (torch.rand(latents.shape[0], generator=g) < cfg.p_uncond).to(device)
        hidden = torch.where(drop[:, None, None], empty, hidden)
        a = alphas_cumprod[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
        with amp:
            pred = unet(noisy, t, encoder_hidden_states=hidden).sample
        per_sample = (pred.float() - noise).pow(2).mean(dim=(1, 2, 3))
        if (
            cfg.snr_gamma > 0
        ):  # epsilon-prediction weight min(SNR, gamma) / SNR: less weight on the easy, low-noise steps
            snr = (a / (1 - a)).view(-1)
            per_sample = per_sample * snr.clamp(max=cfg.snr_gamma) / snr
        loss = per_sample.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), cfg.grad_clip)
        opt.step()
        ema.update(unet, step)
        step += 1
        seen += latents.shape[0]
        loss_sum, loss_n = loss_sum + loss.detach(), loss_n + 1  # no per-step sync with the GPU
        stop = time.time() > deadline
        if step % cfg.log_every == 0 or step == cfg.max_steps or stop:
            log_step(metrics, step, cfg.max_steps, float(loss_sum) / loss_n, lr, step * cfg.batch_size / len(cache), seen,
                     loss_n, time.time() - t_last)  # fmt: skip
            t_last, seen, loss_sum, loss_n = time.time(), 0, 0.0, 0
        if step % cfg.ckpt_every == 0 or step == cfg.max_steps or stop:
            save_checkpoint(
                run / "ckpt",
                model=unet.state_dict(),
                ema=ema.shadow,
                optimizer=opt,
                state={"step": step, "init": init, "config": config_dict(cfg)},
            )
            export_ema(ema, cfg, dim, run, step, init)
        if step % cfg.sample_every == 0 or step == cfg.max_steps:
            ema_model = build_model(cfg, dim).to(device)
            ema_model.load_state_dict(ema.shadow)
            sample_grid(ema_model, cfg, run / "samples" / f"step-{step:07d}.png", device)
            print(f"  samples -> {run / 'samples' / f'step-{step:07d}.png'}", flush=True)
            t_last = time.time()
        if stop:
            print(f"unet: --max_minutes {cfg.max_minutes} reached at step {step}; run again to resume", flush=True)
            break
    metrics.close()
    if not (run / "unet_ema").is_dir():
        export_ema(ema, cfg, dim, run, step, init)
    print(f"unet done at step {step} -> {run / 'unet_ema'}", flush=True)
    return run / "unet_ema"


def main(argv: list[str] | None = None) -> None:
    train(parse_config(UnetConfig, argv))


if __name__ == "__main__":
    main()
