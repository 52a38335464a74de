"""Does a denoiser keep a small detail it is shown? Real faces noised part way, then finished by each model.

``value_faithfulness.py`` asks whether a model draws a value from text; this benchmark asks whether it keeps one
that is already in the latent. It renders ``--faces`` faces of the world with the attributes pinned by ``--pin``
(default: bearded, smiling men), encodes them with the shared autoencoder, noises each latent to the noise level of
step ``i`` of a 25-step schedule (SDEdit: the flow model's sigma, the U-Net model's DDIM step of the nearest
signal-to-noise ratio), lets each model finish the remaining steps from there with ``--prompt`` (guidance 7.5),
and prints how often the oracle reads the pinned values in what comes out. Row ``0`` is the autoencoder's round
trip alone: what the decoder keeps. A model that loses a value from a little noise, where the other keeps it,
cannot draw that detail itself, whatever the sampler or the guidance.

    python benchmarks/restore_detail.py --models embedded-flow,embedded
    python benchmarks/restore_detail.py --pin expression=frown --prompt "a frowning face" --steps-left 5,10,15
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from segakit import SegaPipeline  # noqa: E402
from segakit.core.autoencoder import autoencoder_round_trip  # noqa: E402
from segakit.core.errors import UserError  # noqa: E402
from segakit.world.oracle import Oracle  # noqa: E402
from segakit.world.render import render  # noqa: E402
from segakit.world.schema import parse_assignments, sample_face  # noqa: E402

STEPS = 25


def encode(pipe, images: torch.Tensor) -> torch.Tensor:
    """Images (N, 3, H, W) in [0, 1] -> the denoiser's latents (the autoencoder's mode, scaled as the family scales)."""
    with torch.no_grad():
        z = pipe.vae.encode(images * 2 - 1).latent_dist.mode()
    return pipe.family.from_vae(z)


def noised(pipe, x0: torch.Tensor, noise: torch.Tensor, start: int) -> torch.Tensor:
    """``x0`` noised to the level at which step ``start`` of the model's 25-step schedule begins."""
    scheduler = pipe.scheduler
    if pipe.family.flow:
        sigma = float(scheduler.sigmas[start])
        return (1 - sigma) * x0 + sigma * noise
    t = scheduler.timesteps[start]
    abar = scheduler.alphas_cumprod[t]
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def start_step(flow_pipe, unet_pipe, start: int) -> int:
    """The U-Net model's step whose signal-to-noise ratio is nearest the flow model's at its step ``start``."""
    sigma = float(flow_pipe.scheduler.sigmas[start])
    snr = ((1 - sigma) / max(sigma, 1e-6)) ** 2
    abar = unet_pipe.scheduler.alphas_cumprod[unet_pipe.scheduler.timesteps]
    return int(np.argmin(np.abs(np.log(abar / (1 - abar)).numpy() - np.log(snr))))


def restore(pipe, prompt: str, x0: torch.Tensor, start: int, seed: int) -> torch.Tensor:
    """Finish steps ``start`` .. 24 from ``x0`` noised to step ``start``'s level; images in [0, 1]."""
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))

    def swap(p, i, t, kwargs):  # at the end of step start - 1, the latents become the noised real ones
        if i == start - 1:
            kwargs["latents"] = noised(pipe, x0, noise, start).to(kwargs["latents"].dtype)
        return kwargs

    out = pipe([prompt] * len(x0), num_inference_steps=STEPS, guidance_scale=7.5, output_type="pt",
               generator=torch.Generator().manual_seed(seed), callback_on_step_end=swap)  # fmt: skip
    return out.images.float().clamp(0, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="embedded-flow,embedded", help="the first is a flow model, the second a U-Net")
    ap.add_argument("--pin", default="presentation=man,beard=true,expression=smile")
    ap.add_argument("--prompt", default="a smiling man with a beard")
    ap.add_argument("--faces", type=int, default=32)
    ap.add_argument("--starts", default="5,10,15,20", help="the flow model's steps (of 25) the restoring starts at")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    try:
        pinned = parse_assignments([p for p in args.pin.split(",") if p.strip()])
        starts = [int(s) for s in args.starts.split(",") if s.strip()]
    except (UserError, ValueError) as err:
        ap.exit(2, f"--pin / --starts: {err}\n")
    if not starts or not all(1 <= s < STEPS for s in starts):
        ap.exit(2, f"--starts {args.starts!r}: give steps in 1..{STEPS - 1}, e.g. 5,10,15.\n")
    if not 1 <= args.faces <= 512:
        ap.exit(2, f"--faces {args.faces} is outside 1..512.\n")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if len(models) != 2:
        ap.exit(2, f"--models {args.models!r}: give a flow model and a U-Net model, e.g. embedded-flow,embedded.\n")
    torch.set_num_threads(args.threads)
    oracle = Oracle.load()
    rng = np.random.default_rng(700_000)
    faces = [sample_face(rng, pinned) for _ in range(args.faces)]
    images = torch.stack([torch.from_numpy(np.asarray(render(f), dtype=np.float32) / 255).permute(2, 0, 1)
                          for f in faces])  # fmt: skip
    pipes = [SegaPipeline.from_pretrained(m) for m in models]
    for p in pipes:
        p.set_progress_bar_config(disable=True)
    if not pipes[0].family.flow or pipes[1].family.flow:
        ap.exit(2, f"--models {args.models!r}: the first must be a flow model and the second a U-Net model.\n")
    for p in pipes:
        p.family.set_timesteps(STEPS, torch.device("cpu"), 64, 64)

    def hits(imgs: torch.Tensor) -> str:
        labels = oracle.predict(imgs)
        return " | ".join(f"{sum(str(lab[a]).lower() == str(v).lower() for lab in labels) / len(labels):.3f}"
                          for a, v in pinned.items())  # fmt: skip

    print(f"{len(faces)} faces pinned {args.pin}, restored with {args.prompt!r}; the share the oracle reads\n")
    print("| start (flow step, sigma; U-Net step) | model | " + " | ".join(pinned) + " |")
    print("|---|---|" + "---:|" * len(pinned))
    print(f"| rendered | - | {hits(images)} |")
    t0 = time.perf_counter()
    latents = [encode(pipe, images) for pipe in pipes]
    for model, pipe in zip(models, pipes):
        print(f"| autoencoder round trip | {model} | {hits(autoencoder_round_trip(pipe.vae, images))} |")
    for start in starts:
        u_start = start_step(pipes[0], pipes[1], start)
        sigma = float(pipes[0].scheduler.sigmas[start])
        for model, pipe, x0, s in zip(models, pipes, latents, (start, u_start)):
            out = restore(pipe, args.prompt, x0, s, seed=start)
            print(f"| {start}, {sigma:.2f}; {u_start} | {model} | {hits(out)} |", flush=True)
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
