"""Self-discovery of a concept direction (Li et al., CVPR 2024): the model's own images teach one h-space vector.

1. Generate ``images`` latents with the model itself from a prompt that shows the concept (``positive``, e.g.
   "a face of a woman"), or, for an anti-concept, from the neutral prompt with the concept as ``negative`` (or
   from a prompt with the concept and SEGA ``edits`` that take it out: segakit's "sega-cleaned" recipe).
   The latents are cached on disk in shards (safetensors, written atomically), so an interrupted run resumes.
   A shard is one pipeline call (:func:`shard_latents`); who makes the missing shards is the caller's choice
   (``make_shards``: the CLI hands them to the batch runner's workers; default: this process, one after another).
2. With every weight frozen, optimise only ``c`` with the ordinary denoising loss on those latents while the
   U-Net is conditioned on the prompt *without* the concept (``neutral``, e.g. "a face of a person") and ``c``
   is added to the mid-block output: the only way to reconstruct the images is for ``c`` to carry the concept.
   The paper's settings: Adam, learning rate 0.1, batch 8, t uniform over the training schedule, MSE on the
   noise (on the velocity for v-prediction models).

    direction = learn_direction(pipe, LearnConfig(name="woman", positive="a face of a woman",
                                                  neutral="a face of a person", images=200, steps=500))
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from segakit.core.atomic import atomic_open, ensure_writable_dir
from segakit.core.errors import UserError
from segakit.core.fingerprint import fingerprint
from segakit.core.hooks import BlockShift
from segakit.directions.direction import Direction


@dataclass(frozen=True)
class LearnConfig:
    name: str  # the concept, e.g. "woman"
    positive: str  # a prompt that shows the concept (or the neutral prompt, with the concept as `negative`)
    neutral: str = "a face of a person"  # the prompt without the concept: what the U-Net is conditioned on
    negative: str | None = None  # the concept as a negative prompt: learns an anti-concept direction
    edits: tuple = ()  # SEGA edits (segakit.Edit) applied while generating the images, e.g. the concept reversed
    images: int = 200  # images generated for learning (the paper: 1,000)
    steps: int = 500  # optimisation steps (the paper: about 2,500)
    batch: int = 8  # latents per optimisation step (the paper: 8)
    lr: float = 0.1  # Adam's learning rate (the paper: 0.1)
    seed: int = 0  # image i is generated with seed + i; the optimisation draws from seed too
    gen_steps: int = 25  # denoising steps of the generated images
    guidance: float = 7.5  # classifier-free guidance of the generated images
    gen_batch: int = 16  # images per generation call (one cache shard)
    height: int | None = None  # default: the model's
    width: int | None = None
    site: str | None = (
        None  # transformers: the block, "transformer_blocks.K" (default: the family's); U-Nets: mid_block
    )

    def check(self) -> LearnConfig:
        if not self.name.strip():
            raise UserError("The direction's name is empty; name the concept, e.g. 'woman' or 'glasses'.")
        if not self.positive.strip() and not self.negative:
            raise UserError("The positive prompt is empty; give a prompt that shows the concept.")
        for label, value in (("--images", self.images), ("--steps", self.steps), ("--batch", self.batch),
                             ("--gen-steps", self.gen_steps), ("--gen-batch", self.gen_batch)):  # fmt: skip
            if int(value) != value or value < 1:
                raise UserError(f"{label} {value!r} is not a whole number of 1 or more.")
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise UserError(f"--lr {self.lr!r} is not a positive number.")
        if self.seed < 0:
            raise UserError(f"--seed {self.seed} is negative; use a whole number of 0 or more.")
        return self


Progress = Callable[[str, int, int], None]  # (phase, done, total): "images" or "steps"
# makes the shards (first image, count) given, yielding (first image, latents) as each is done, in any order
ShardMaker = Callable[[list[tuple[int, int]]], Iterable[tuple[int, torch.Tensor]]]


def _size(pipe, cfg: LearnConfig) -> tuple[int, int]:
    default = pipe.family.default_size()
    return cfg.height or default, cfg.width or default


def cache_key(pipe, cfg: LearnConfig) -> str:
    """Everything the cached latents depend on: the model's weights, prompts, seeds, steps, guidance, size."""
    what = {"unet": fingerprint(pipe.family.denoiser), "text": fingerprint(pipe.text_encoder), "positive": cfg.positive,
            "negative": cfg.negative, "seed": cfg.seed, "gen_steps": cfg.gen_steps, "guidance": cfg.guidance,
            "size": _size(pipe, cfg), "scheduler": type(pipe.scheduler).__name__}  # fmt: skip
    if cfg.edits:  # absent without edits, so latents cached before edits existed stay valid
        what["edits"] = [asdict(e) if is_dataclass(e) else repr(e) for e in cfg.edits]
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def shard_latents(pipe, cfg: LearnConfig, first: int, n: int) -> torch.Tensor:
    """Clean latents of images ``first`` .. ``first + n - 1`` (seed ``cfg.seed + i`` each) in one pipeline call."""
    height, width = _size(pipe, cfg)
    gens = [torch.Generator().manual_seed(cfg.seed + first + i) for i in range(n)]
    out = pipe(cfg.positive, negative_prompt=cfg.negative, num_inference_steps=cfg.gen_steps, guidance_scale=cfg.guidance,
               num_images_per_prompt=n, generator=gens, height=height, width=width, output_type="latent",
               **({"edits": list(cfg.edits)} if cfg.edits else {}))  # fmt: skip
    return out.images.float().cpu().contiguous()


def shards_on(imap: Callable, cfg: LearnConfig) -> ShardMaker:
    """A ``make_shards`` that hands each missing shard to ``imap(shard_latents, args)`` as one call (the batch
    runner's ``CallRunner.imap``, which yields results with ``.index`` and ``.value`` as they finish)."""

    def make(todo: list[tuple[int, int]]) -> Iterator[tuple[int, torch.Tensor]]:
        for r in imap(shard_latents, [(cfg, first, n) for first, n in todo]):
            yield todo[r.index][0], r.value

    return make


def generate_latents(pipe, cfg: LearnConfig, cache: Path, progress: Progress | None = None,
                     make_shards: ShardMaker | None = None) -> torch.Tensor:  # fmt: skip
    """The ``cfg.images`` clean latents (as the U-Net sees them), generated in shards or read from ``cache``;
    ``make_shards`` makes the missing ones (default: :func:`shard_latents` on ``pipe``, one after another)."""
    from safetensors.torch import load_file, save

    pipe.set_progress_bar_config(disable=True)
    folder = ensure_writable_dir(Path(cache) / cache_key(pipe, cfg))
    plan = [(first, min(cfg.gen_batch, cfg.images - first)) for first in range(0, cfg.images, cfg.gen_batch)]
    path = {first: folder / f"latents-{cfg.seed + first:07d}-{n}.safetensors" for first, n in plan}
    shards = {first: load_file(str(path[first]))["latents"] for first, _ in plan if path[first].is_file()}
    done = sum(len(x) for x in shards.values())
    if progress and done:
        progress("images", done, cfg.images)
    todo = [(first, n) for first, n in plan if first not in shards]
    made = (
        make_shards(todo)
        if make_shards is not None
        else ((first, shard_latents(pipe, cfg, first, n)) for first, n in todo)
    )
    for first, latents in made:
        with atomic_open(path[first], "wb") as fh:
            fh.write(save({"latents": latents.contiguous()}))
        shards[first] = latents
        done += len(latents)
        if progress:
            progress("images", done, cfg.images)
    return torch.cat([shards[first] for first, _ in plan])


def _neutral_conditioning(pipe, fam, cfg: LearnConfig, device):
    cond = fam.encode([cfg.neutral], device)
    fam.finish([cond], *_size(pipe, cfg))
    return cond


def _noisy(fam, scheduler, x0, noise, gen, device):
    """A training example of the denoising loss at a random time: (x_t, t, target).

    U-Nets: t uniform over the training schedule, target the noise (the velocity for v-prediction), as the paper.
    Rectified flows: sigma uniform in (0, 1), x_t = (1 - sigma) x0 + sigma noise, target the velocity noise - x0.
    """
    b = x0.shape[0]
    if fam.flow:
        sigma = torch.rand(b, generator=gen).to(device, x0.dtype)
        s = sigma.view(-1, 1, 1, 1)
        return (1 - s) * x0 + s * noise, sigma * scheduler.config.num_train_timesteps, noise - x0
    t = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=gen).to(device)
    a = scheduler.alphas_cumprod.to(device)[t].view(-1, 1, 1, 1).to(x0.dtype)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
    target = a.sqrt() * noise - (1 - a).sqrt() * x0 if scheduler.config.prediction_type == "v_prediction" else noise
    return xt, t, target


def learn_direction(pipe, cfg: LearnConfig, cache: str | Path = "out/directions-cache",
                    progress: Progress | None = None, make_shards: ShardMaker | None = None) -> Direction:  # fmt: skip
    """Learn ``cfg.name``'s direction on ``pipe`` (a :class:`segakit.SegaPipeline`); latents cached under ``cache``
    (``make_shards``: who makes the missing ones, see :func:`generate_latents`)."""
    cfg = cfg.check()
    t0 = time.perf_counter()
    pipe.set_progress_bar_config(disable=True)
    latents = generate_latents(pipe, cfg, Path(cache), progress, make_shards)
    t_gen = time.perf_counter() - t0

    device = pipe._execution_device
    fam, scheduler = pipe.family, pipe.scheduler
    fam.guidance(cfg.guidance, 1.0)  # FLUX.1-dev: the distilled guidance the images were made with
    denoiser = fam.denoiser
    height, width = _size(pipe, cfg)
    site = fam.hspace_site(height, width, cfg.site)
    shape = site.shape
    with torch.no_grad():
        cond = _neutral_conditioning(pipe, fam, cfg, device)
    frozen = [p.requires_grad for p in denoiser.parameters()]
    denoiser.requires_grad_(False)
    c = torch.zeros(shape, device=device, dtype=torch.float32, requires_grad=True)
    opt = torch.optim.Adam([c], lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed + 1_000_003)
    losses: list[float] = []
    b = min(cfg.batch, latents.shape[0])
    try:
        with BlockShift(site.module) as shift, torch.enable_grad():
            for step in range(cfg.steps):
                idx = torch.randint(0, latents.shape[0], (b,), generator=gen)
                x0 = latents[idx].to(device, denoiser.dtype)
                noise = torch.randn(x0.shape, generator=gen).to(device, denoiser.dtype)
                xt, t, target = _noisy(fam, scheduler, x0, noise, gen, device)
                shift.set(c.to(denoiser.dtype).expand(b, *shape))
                rows = cond.repeat_rows(b)
                if fam.flow:
                    pred = fam.predict(xt, t, rows)
                else:  # the U-Net called directly, as the paper (no scheduler input scaling)
                    pred = denoiser(xt, t, **rows.unet_kwargs(), return_dict=False)[0]
                loss = F.mse_loss(pred.float(), target.float())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(loss.item())
                if progress:
                    progress("steps", step + 1, cfg.steps)
    finally:
        for p, g in zip(denoiser.parameters(), frozen):
            p.requires_grad_(g)
    tail = losses[-max(1, len(losses) // 10) :]
    model = {"denoiser" if fam.flow else "unet": fingerprint(denoiser), "site": site.name}
    meta = {**asdict(cfg), **model, "shape": list(shape), "size": [height, width],
            "final_loss": sum(tail) / len(tail), "first_loss": losses[0], "seconds_generating": round(t_gen, 1),
            "seconds_learning": round(time.perf_counter() - t0 - t_gen, 1)}  # fmt: skip
    return Direction(c.detach().cpu(), cfg.name, meta)
