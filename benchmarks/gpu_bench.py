"""SEGA's cost on a GPU against diffusers, on SD-1.5-sized and SDXL-sized U-Nets with random weights.

The components are built from the published configs (SD 1.5: runwayml/stable-diffusion-v1-5; SDXL:
stabilityai/stable-diffusion-xl-base-1.0), written out below because nothing can be downloaded where this runs;
the weights are random, which changes no timing. float16, PyTorch's SDPA attention (diffusers' default
processor), ``output_type="latent"`` so that the sampling loops are compared without the decoder.

In one run it records (median of ``--repeats`` after a warm-up, cases interleaved):

- parity: segakit's ``SegaPipeline`` vs diffusers' ``SemanticStableDiffusionPipeline`` on the SD 1.5 components,
  2 edits, same seeds: max |difference| of the final latents relative to their largest value, against
  ``PARITY_TOLERANCE`` (fp16: both loops run the same U-Net on the same rows; summation order may differ);
- SD 1.5, batch 1 and 4: segakit vs diffusers' semantic pipeline with 2 and 4 edits (all active, and cooling
  down halfway), segakit vs the bare U-Net calls its branches need (same rows, prebuilt inputs), recorded-guidance
  reuse vs plain CFG (``StableDiffusionPipeline``);
- SD 1.5 and SDXL, batch 1 and 4: segakit with 2 and 4 edits over diffusers' plain CFG, exact and with concept
  refresh (``--refresh``, default ``4,3+2``: refresh 4, and refresh 3 with guidance refresh 2);
- SDXL, batch 1 and 4: segakit with 2 and 4 edits vs its bare U-Net calls, reuse vs ``StableDiffusionXLPipeline``
  (diffusers has no semantic pipeline for SDXL).

    bash benchmarks/gpu.sh out/gpu                                   # on a GPU (under 8 minutes on an H100-class card)
    python benchmarks/gpu_bench.py --dry-run --out /tmp/gpu-dry      # CPU, tiny components: proves the script runs
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import torch  # noqa: E402

PARITY_TOLERANCE = 2e-2  # fp16: max |ours - diffusers| / max |diffusers| over the final latents

SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32, norm_eps=1e-5, flip_sin_to_cos=True, freq_shift=0,
)  # fmt: skip
SDXL_UNET = dict(
    sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(5, 10, 20), cross_attention_dim=2048, use_linear_projection=True, addition_embed_type="text_time",
    addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816, norm_num_groups=32, flip_sin_to_cos=True, freq_shift=0,
)  # fmt: skip
VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32,
)  # fmt: skip
CLIP_L = dict(
    hidden_size=768,
    intermediate_size=3072,
    num_attention_heads=12,
    num_hidden_layers=12,
    projection_dim=768,
    hidden_act="quick_gelu",
)
CLIP_BIG_G = dict(
    hidden_size=1280,
    intermediate_size=5120,
    num_attention_heads=20,
    num_hidden_layers=32,
    projection_dim=1280,
    hidden_act="gelu",
)


def _scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                         set_alpha_to_one=False, steps_offset=1)  # fmt: skip


def _text(tokenizer, config: dict, projection: bool):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    n = len(tokenizer)
    cfg = CLIPTextConfig(
        vocab_size=n, bos_token_id=n - 2, eos_token_id=n - 1, pad_token_id=n - 1, max_position_embeddings=77, **config
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg)


def published(kind: str, tmp: Path, device: str, dtype) -> dict:
    """Components of the published shapes, random weights, built on ``device`` directly."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from tiny_models import make_tokenizer

    torch.manual_seed(0)
    with torch.device(device):
        parts = {
            "tokenizer": make_tokenizer(tmp / "tok", max_length=77),
            "scheduler": _scheduler(),
            "vae": AutoencoderKL(**VAE),
        }
        if kind == "sd15":
            parts["unet"] = UNet2DConditionModel(**SD15_UNET)
            parts["text_encoder"] = _text(parts["tokenizer"], CLIP_L, projection=False)
        else:
            parts["unet"] = UNet2DConditionModel(**SDXL_UNET)
            parts["text_encoder"] = _text(parts["tokenizer"], CLIP_L, projection=False)
            parts["tokenizer_2"] = make_tokenizer(tmp / "tok2", max_length=77)
            parts["text_encoder_2"] = _text(parts["tokenizer_2"], CLIP_BIG_G, projection=True)
    return {k: (v.to(device, dtype).eval() if isinstance(v, torch.nn.Module) else v) for k, v in parts.items()}


def tiny(kind: str, tmp: Path, device: str, dtype) -> dict:
    from tiny_models import sd_components, sdxl_components

    parts = sd_components(tmp) if kind == "sd15" else sdxl_components(tmp)
    return {k: (v.to(device, dtype) if isinstance(v, torch.nn.Module) else v) for k, v in parts.items()}


class Clock:
    def __init__(self, device: str, repeats: int) -> None:
        self.device, self.repeats = device, repeats

    def sync(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    def median(self, cases: dict) -> dict[str, float]:
        """Each case once to warm up, then ``repeats`` interleaved rounds; the median seconds per case."""
        times: dict[str, list[float]] = {name: [] for name in cases}
        for fn in cases.values():
            fn()
        for _ in range(self.repeats):
            for name, fn in cases.items():
                self.sync()
                start = time.perf_counter()
                fn()
                self.sync()
                times[name].append(time.perf_counter() - start)
        return {name: statistics.median(t) for name, t in times.items()}


def _edits(n: int, steps: int, cooldown: bool) -> dict:
    concepts = ["glasses", "a hat", "a beard", "smiling"][:n]
    warmup = min(2, steps // 4)  # the edits act from step 2 (step 1 of a 4-step dry run)
    return dict(editing_prompt=concepts, edit_guidance_scale=[6.0] * n, edit_warmup_steps=[warmup] * n, edit_threshold=[0.9] * n,
                reverse_editing_direction=[False] * n, edit_cooldown_steps=[steps // 2] * n if cooldown else None)  # fmt: skip


def bare_unet(pipe, rows: int, steps: int, size: int, device: str, dtype):
    """The U-Net calls a sampling loop with ``rows`` rows per step makes, on prebuilt inputs."""
    from segakit.core.conditioning import sdxl_time_ids

    cond = pipe.encode_texts(["a face"], device)
    latent = size // pipe.vae_scale_factor
    x = torch.randn(rows, 4, latent, latent, device=device, dtype=dtype)
    kwargs = {"encoder_hidden_states": cond.embeds.expand(rows, -1, -1)}
    if cond.pooled is not None:
        kwargs["added_cond_kwargs"] = {"text_embeds": cond.pooled.expand(rows, -1),
                                       "time_ids": sdxl_time_ids(size, size, dtype, device).expand(rows, -1)}  # fmt: skip
    pipe.scheduler.set_timesteps(steps, device=device)
    timesteps = pipe.scheduler.timesteps

    @torch.no_grad()
    def run():
        for t in timesteps:
            pipe.unet(x, t, **kwargs, return_dict=False)

    return run


def fast_label(k: int, g: int) -> str:
    return f"refresh {k}" + (f" + guidance refresh {g}" if g > 1 else "")


def parse_refresh(text: str) -> list[tuple[int, int]]:
    """``"4,3+2"`` -> [(4, 1), (3, 2)]: concept refresh K, optionally + guidance refresh G."""
    out = []
    for item in filter(None, (x.strip() for x in text.split(","))):
        k, _, g = item.partition("+")
        out.append((int(k), int(g or 1)))
    return out


def bench(kind: str, parts: dict, args, device: str, dtype, clock: Clock, report: dict) -> None:
    from diffusers import SemanticStableDiffusionPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline

    from segakit.sega.pipeline import SegaPipeline

    if kind == "sd15":
        plain = StableDiffusionPipeline(
            **parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False
        )
        theirs = SemanticStableDiffusionPipeline(
            **parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False
        )
    else:
        plain, theirs = StableDiffusionXLPipeline(**parts), None
    ours = SegaPipeline.from_pipe(plain)
    for p in (plain, theirs, ours):
        if p is not None:
            p.set_progress_bar_config(disable=True)
    size = args.size or (512 if kind == "sd15" else 1024)
    refresh = parse_refresh(args.refresh)
    steps = args.steps
    common = dict(num_inference_steps=steps, height=size, width=size, output_type="latent")

    def gens(n):
        return [torch.Generator(device).manual_seed(i) for i in range(n)]

    if theirs is not None:
        a = ours("a face", **common, **_edits(2, steps, False), generator=gens(1)).images.float()
        b = theirs("a face", **common, **_edits(2, steps, False), generator=gens(1)).images.float()
        rel = float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
        report[f"{kind} parity vs SemanticStableDiffusionPipeline (2 edits, relative max |diff| of latents)"] = rel
        report[f"{kind} parity within {PARITY_TOLERANCE:g}"] = bool(rel <= PARITY_TOLERANCE)
        c = ours("a face", **common, generator=gens(1)).images.float()
        # the parity is not vacuous: the edits move the latents by this much (relative, as above)
        report[f"{kind} edits' effect (relative max |2 edits - no edits| of latents)"] = float(
            (a - c).abs().max() / c.abs().max().clamp_min(1e-12)
        )
    for batch in (1, 4):
        record = ours(
            "a face",
            **common,
            **_edits(2, steps, False),
            num_images_per_prompt=batch,
            generator=gens(batch),
            record_guidance=True,
        )
        cases = {}
        for n in (2, 4):
            for cool in (False, True):
                label = f"{n} edits{', cooling down halfway' if cool else ''}"
                cases[f"segakit, {label}"] = lambda n=n, cool=cool, batch=batch: ours(
                    "a face", **common, **_edits(n, steps, cool), num_images_per_prompt=batch, generator=gens(batch)
                )
                if theirs is not None:
                    cases[f"diffusers, {label}"] = lambda n=n, cool=cool, batch=batch: theirs(
                        "a face", **common, **_edits(n, steps, cool), num_images_per_prompt=batch, generator=gens(batch)
                    )
            for k, g in refresh:  # concept refresh K (and guidance refresh G): issue 34's ratios over plain CFG
                cases[f"segakit, {n} edits, {fast_label(k, g)}"] = lambda n=n, k=k, g=g, batch=batch: ours(
                    "a face", **common, **_edits(n, steps, False), edit_refresh=k, guidance_refresh=g,
                    num_images_per_prompt=batch, generator=gens(batch),
                )  # fmt: skip
            cases[f"bare U-Net, {n} edits"] = bare_unet(ours, batch * (2 + n), steps, size, device, dtype)
        cases["segakit, reused guidance"] = lambda batch=batch, record=record: ours(
            "a face", **common, sem_guidance=record.guidance, num_images_per_prompt=batch, generator=gens(batch)
        )
        cases["diffusers, plain CFG"] = lambda batch=batch: plain(
            "a face", **common, num_images_per_prompt=batch, generator=gens(batch)
        )
        cases["bare U-Net, plain CFG"] = bare_unet(ours, batch * 2, steps, size, device, dtype)
        times = clock.median(cases)
        prefix = f"{kind} batch {batch}"
        report[f"{prefix} seconds"] = {k: round(v, 4) for k, v in times.items()}
        ratios = {}
        for n in (2, 4):
            if theirs is not None:
                ratios[f"segakit / diffusers, {n} edits"] = (
                    times[f"segakit, {n} edits"] / times[f"diffusers, {n} edits"]
                )
                ratios[f"segakit / diffusers, {n} edits cooling down"] = (
                    times[f"segakit, {n} edits, cooling down halfway"]
                    / times[f"diffusers, {n} edits, cooling down halfway"]
                )
            ratios[f"segakit / bare U-Net, {n} edits"] = times[f"segakit, {n} edits"] / times[f"bare U-Net, {n} edits"]
            plain_time = times["diffusers, plain CFG"]
            ratios[f"segakit / plain CFG, {n} edits, exact"] = times[f"segakit, {n} edits"] / plain_time
            for k, g in refresh:
                label = fast_label(k, g)
                ratios[f"segakit / plain CFG, {n} edits, {label}"] = times[f"segakit, {n} edits, {label}"] / plain_time
        ratios["reuse / plain CFG"] = times["segakit, reused guidance"] / times["diffusers, plain CFG"]
        report[f"{prefix} ratios"] = {k: round(v, 3) for k, v in ratios.items()}
        print(json.dumps({prefix: report[f"{prefix} ratios"]}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--dry-run", action="store_true", help="CPU, float32, tiny components, 4 steps: checks that the script runs"
    )
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (default 25; dry run 4)")
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds per case (default 3; dry run 1)")
    ap.add_argument("--size", type=int, default=None, help="image size (default 512 for SD 1.5, 1024 for SDXL)")
    ap.add_argument("--models", default="sd15,sdxl")
    ap.add_argument(
        "--refresh",
        default="4,3+2",
        help="concept refresh settings timed against plain CFG: K or K+G (guidance refresh G); empty: none",
    )
    args = ap.parse_args()
    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        sys.exit(
            "benchmarks/gpu_bench.py: no CUDA GPU here; run it on a GPU, or pass --dry-run to check it on the CPU."
        )
    device, dtype = ("cpu", torch.float32) if dry else ("cuda", torch.float16)
    if dry:
        torch.set_num_threads(1)  # on a shared CPU, two spinning OpenMP threads make tiny calls 100x slower
    args.steps = args.steps or (4 if dry else 25)
    args.size = args.size or (None if not dry else 32)
    clock = Clock(device, args.repeats or (1 if dry else 3))
    report: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "dry_run": dry, "steps": args.steps,
                    "dtype": str(dtype), "torch": torch.__version__,
                    "device": torch.cuda.get_device_name() if not dry else "cpu (dry run, tiny components)"}  # fmt: skip
    import diffusers

    report["diffusers"] = diffusers.__version__
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    for kind in args.models.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            parts = (tiny if dry else published)(kind, Path(tmp), device, dtype)
            bench(kind, parts, args, device, dtype, clock, report)
        del parts
        if device == "cuda":
            torch.cuda.empty_cache()
        (args.out / "results.json").write_text(json.dumps(report, indent=1))
    report["seconds"] = round(time.perf_counter() - started, 1)
    (args.out / "results.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
