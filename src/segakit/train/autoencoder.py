"""Recipe: the embedded model's autoencoder -- a small diffusers ``AutoencoderKL``, 64x64x3 <-> 16x16x4.

Three encoder/decoder blocks (two of them downsample: 64 -> 32 -> 16). Loss: L1 on pixels plus L1 on
horizontal/vertical pixel differences (keeps thin lines -- glasses frames, mouths -- sharp), plus a tiny KL
term. Data are fresh world renders (seed 0, sample ``step * batch_size`` on), so nothing repeats.
At the end the latent scale is measured on held-out renders and stored as ``scaling_factor`` (1 / std).

    python -m segakit.train.autoencoder                      # the real run (resumes)
    python -m segakit.train.autoencoder --max_steps 3 --run /tmp/ae --batch_size 4   # smoke
    python -m segakit.train.autoencoder --decoder_only true --max_steps 4000 --lr 2e-4 --data_offset 1000000

Writes ``<run>/ckpt`` (resumable), ``<run>/final`` (diffusers ``save_pretrained``), ``<run>/recon.png``
(top: renders, bottom: reconstructions) and ``<run>/metrics.jsonl``.
"""

from __future__ import annotations

import json
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from segakit.train.checkpoint import load_checkpoint, replace_dir, save_checkpoint
from segakit.train.config import config_dict, lr_at, parse_config, runs_root, setup_torch
from segakit.train.data import PREVIEW_SEED, TRAIN_SEED, batch_at, grid, to_pil


@dataclass
class AutoencoderConfig:
    run: str = ""  # default: $SEGAKIT_RUNS/autoencoder (or .../decoder with decoder_only)
    # decoder_only: fine-tune the decoder of a trained autoencoder (``init``) with its encoder frozen. The latent
    # space, the scaling factor and hence the latent cache and the U-Net stay valid (as SD's ft-MSE decoder).
    decoder_only: bool = False
    init: str = ""  # decoder_only: the autoencoder to start from; default $SEGAKIT_RUNS/autoencoder/final
    data_offset: int = 0  # first world index (the decoder stage uses fresh samples)
    device: str = "cpu"
    threads: int = 0  # 0: torch's default
    amp: bool = True  # bfloat16 autocast (about 1.6x faster on a CPU with avx512_bf16)
    seed: int = TRAIN_SEED
    # model
    block_out_channels: tuple[int, ...] = (32, 64, 128)
    layers_per_block: int = 1
    latent_channels: int = 4
    norm_num_groups: int = 32
    # optimisation
    batch_size: int = 16
    max_steps: int = 6800  # the shipped run followed an 8,000-step cosine schedule and was stopped here
    lr: float = 4e-4
    warmup: int = 100
    schedule: str = "cosine"
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    edge_weight: float = 0.5
    kl_weight: float = 1e-6
    # bookkeeping
    log_every: int = 25
    ckpt_every: int = 200
    preview_every: int = 500
    scale_samples: int = 1024  # held-out renders used to measure the latent std


def build_model(cfg: AutoencoderConfig) -> AutoencoderKL:
    n = len(cfg.block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=cfg.block_out_channels,
        layers_per_block=cfg.layers_per_block,
        latent_channels=cfg.latent_channels,
        norm_num_groups=cfg.norm_num_groups,
        sample_size=64,
    )


def edges(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., 1:, :] - x[..., :-1, :], x[..., :, 1:] - x[..., :, :-1]


def losses(vae: AutoencoderKL, x: torch.Tensor, cfg: AutoencoderConfig) -> dict[str, torch.Tensor]:
    with torch.no_grad() if cfg.decoder_only else nullcontext():
        posterior = vae.encode(x).latent_dist
    rec = vae.decode(posterior.sample()).sample.float()
    l1 = (rec - x).abs().mean()
    (rh, rw), (xh, xw) = edges(rec), edges(x)
    edge = (rh - xh).abs().mean() + (rw - xw).abs().mean()
    kl = posterior.kl().mean() / x[0].numel()
    total = l1 + cfg.edge_weight * edge + cfg.kl_weight * kl
    return {"loss": total, "l1": l1, "edge": edge, "kl": kl}


@torch.no_grad()
def reconstruct(vae: AutoencoderKL, x: torch.Tensor) -> torch.Tensor:
    return vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)


@torch.no_grad()
def save_preview(vae: AutoencoderKL, path: Path, device: torch.device, n: int = 16) -> float:
    """Renders (top) over reconstructions (bottom); returns the reconstruction PSNR in dB."""
    vae.eval()
    x = batch_at(PREVIEW_SEED, 0, n).images.to(device)
    rec = reconstruct(vae, x)
    vae.train()
    mse = F.mse_loss((rec + 1) / 2, (x + 1) / 2).item()
    images = to_pil(torch.cat([x[:8], rec[:8], x[8:16], rec[8:16]]))
    grid(images, cols=8, scale=3).save(path)
    return 10 * torch.log10(torch.tensor(1.0 / max(mse, 1e-10))).item()


@torch.no_grad()
def latent_scale(vae: AutoencoderKL, device: torch.device, n: int) -> float:
    """1 / std of the posterior means over ``n`` held-out renders."""
    vae.eval()
    zs = []
    for start in range(0, n, 64):
        x = batch_at(PREVIEW_SEED, 10_000 + start, min(64, n - start)).images.to(device)
        zs.append(vae.encode(x).latent_dist.mode().float().cpu())
    return float(1.0 / torch.cat(zs).std())


def train(cfg: AutoencoderConfig) -> Path:
    device = setup_torch(cfg.device, cfg.threads)
    run = Path(cfg.run) if cfg.run else runs_root() / ("decoder" if cfg.decoder_only else "autoencoder")
    run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    if cfg.decoder_only:
        vae = AutoencoderKL.from_pretrained(
            cfg.init or runs_root() / "autoencoder" / "final", torch_dtype=torch.float32
        ).to(device)
        frozen = [*vae.encoder.parameters(), *vae.quant_conv.parameters()]
        for p in frozen:
            p.requires_grad_(False)
        trainable = [p for p in vae.parameters() if p.requires_grad]
    else:
        vae = build_model(cfg).to(device)
        trainable = list(vae.parameters())
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    state = load_checkpoint(run / "ckpt", vae, opt)
    step = state["step"] if state else 0
    n_params = sum(p.numel() for p in trainable)
    what = "decoder fine-tune" if cfg.decoder_only else "autoencoder"
    print(
        f"{what}: {n_params / 1e6:.2f}M trainable params, {'resuming at step ' + str(step) if state else 'from scratch'} -> {run}",
        flush=True,
    )
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if cfg.amp else nullcontext()
    metrics = open(run / "metrics.jsonl", "a")
    t_last, seen = time.time(), 0
    while step < cfg.max_steps:
        lr = lr_at(step, cfg.lr, cfg.warmup, cfg.max_steps, cfg.schedule)
        for g in opt.param_groups:
            g["lr"] = lr
        x = batch_at(cfg.seed, cfg.data_offset + step * cfg.batch_size, cfg.batch_size).images.to(device)
        with amp:
            out = losses(vae, x, cfg)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
        opt.step()
        step += 1
        seen += cfg.batch_size
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            dt = time.time() - t_last
            rec = {k: round(v.item(), 5) for k, v in out.items()}
            print(
                f"step {step}/{cfg.max_steps} loss {rec['loss']:.4f} l1 {rec['l1']:.4f} edge {rec['edge']:.4f} kl {rec['kl']:.1f} lr {lr:.2e}",
                flush=True,
            )
            print(f"  throughput {seen / dt:.1f} img/s, {dt / max(1, seen // cfg.batch_size):.2f} s/step", flush=True)
            metrics.write(json.dumps({"step": step, "lr": lr, "img_per_s": seen / dt, **rec}) + "\n")
            metrics.flush()
            t_last, seen = time.time(), 0
        if step % cfg.preview_every == 0 or step == cfg.max_steps:
            psnr = save_preview(vae, run / "recon.png", device)
            print(f"  preview psnr {psnr:.2f} dB -> {run / 'recon.png'}", flush=True)
        if step % cfg.ckpt_every == 0 or step == cfg.max_steps:
            save_checkpoint(
                run / "ckpt", model=vae.state_dict(), optimizer=opt, state={"step": step, "config": config_dict(cfg)}
            )
    metrics.close()
    if cfg.decoder_only:  # same encoder, same latents: keep the scaling factor the cache was made with
        scale = vae.config.scaling_factor
    else:
        scale = latent_scale(vae, device, cfg.scale_samples)
        vae.register_to_config(scaling_factor=scale)
    psnr = save_preview(vae, run / "recon.png", device)
    tmp = run / "final.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    vae.to("cpu").save_pretrained(tmp, safe_serialization=True)
    (tmp / "training.json").write_text(
        json.dumps({"step": step, "psnr_db": psnr, "scaling_factor": scale, "config": config_dict(cfg)}, indent=1)
    )
    replace_dir(tmp, run / "final")
    print(f"{what} done: scaling_factor {scale:.4f}, preview psnr {psnr:.2f} dB -> {run / 'final'}", flush=True)
    return run / "final"


def main(argv: list[str] | None = None) -> None:
    train(parse_config(AutoencoderConfig, argv))


if __name__ == "__main__":
    main()
