"""SEGA sampling speed on a flow transformer (FLUX shape): segakit's one batched call per step against the
schedule of diffusers' community ``FluxSemanticGuidancePipeline`` (one transformer call for the prompt and one
per concept per step, run one after another, concepts computed only between the smallest warm-up and the
largest cool-down), and against segakit's own bare transformer calls.

The community pipeline is not part of the diffusers package, so its *schedule* is written here independently:
the same transformer calls on the same components, inputs and steps; its guidance arithmetic is left out (it is
elementwise and cheap), so the comparison is generous to it. All ratios come from one run (medians of
--repeats interleaved runs, decoding left out).

    python benchmarks/sega_speed_flow.py                    # FLUX-shaped 2 + 4 blocks, 192 wide, random weights
    python benchmarks/sega_speed_flow.py --threads 1 --repeats 5
    python benchmarks/sega_speed_flow.py --threads 1 --repeats 5 --edit-refresh 4   # segakit with concept refresh
    python benchmarks/sega_speed_flow.py --threads 1 --repeats 5 --momentum 0 --max-batch 4   # the community's rows and call sizes

Prints:
  ours / community schedule, 2 edits                  (target <= 1.0)
  ours / community schedule, 2 edits cooling halfway  (target <= 0.8)
  ours / bare transformer calls, in-run               (target <= 1.03)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402
from diffusers import FluxTransformer2DModel  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from tiny_flow_models import flux_components  # noqa: E402

from segakit.sega.flow_pipelines import SegaFluxPipeline  # noqa: E402


def flux_shaped(width: int = 192, double: int = 2, single: int = 4) -> SegaFluxPipeline:
    parts = flux_components(Path(tempfile.mkdtemp()))
    heads = width // 32
    parts["transformer"] = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=double, num_single_layers=single, attention_head_dim=32,
        num_attention_heads=heads, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[8, 12, 12],
        guidance_embeds=True,
    ).eval()  # fmt: skip
    pipe = SegaFluxPipeline(**parts)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def community_schedule(pipe, prompt: str, concepts: list[str], warmup: list[int], cooldown: list[int | None],
                       steps: int, images: int, size: int, seq: int) -> None:  # fmt: skip
    """The transformer calls of the community pipeline's loop: prompt, then each concept alone."""
    fam = pipe.family
    fam.max_sequence_length = seq
    fam.guidance(3.5, 1.0)
    p = fam.encode([prompt], pipe.device).repeat_rows(images)
    cs = [fam.encode([c], pipe.device).repeat_rows(images) for c in concepts]
    timesteps = fam.set_timesteps(steps, pipe.device, size, size)
    x = fam.prepare_latents(images, size, size, torch.float32, pipe.device, torch.Generator().manual_seed(0))
    lo = min(warmup)
    hi = max(steps if c is None else c for c in cooldown)
    with torch.no_grad():
        for i, t in enumerate(timesteps):
            v = fam.predict(x, t, p)
            if lo <= i < hi:
                for c in cs:
                    fam.predict(x, t, c)
            x = pipe.scheduler.step(v, t, x, return_dict=False)[0]


def median_time(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--size", type=int, default=64, help="image side in pixels (64: 16x16x4 latents, 64 tokens)")
    ap.add_argument("--seq", type=int, default=32, help="T5 tokens per prompt")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--max-batch", type=int, default=None, help="segakit's max_unet_batch: rows per transformer call")
    ap.add_argument("--edit-refresh", type=int, default=1, help="segakit's edit_refresh (1: exact SEGA)")
    ap.add_argument(
        "--splits",
        action="store_true",
        help="also time one step's 12 rows (3 rows x 4 images) as 1, 2, 3, 4, 6 or 12 transformer calls",
    )
    ap.add_argument("--momentum", type=float, default=0.1,
                    help="segakit's edit_momentum_scale (SEGA's 0.1 builds momentum from step 0, so concepts are "
                         "computed from there; 0: from each warm-up on, the community schedule's rows)")  # fmt: skip
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe = flux_shaped()
    from segakit import Edit

    half = args.steps // 2
    common = dict(prompt="a face of a person", num_inference_steps=args.steps, num_images_per_prompt=args.images,
                  height=args.size, width=args.size, max_sequence_length=args.seq, output_type="latent")  # fmt: skip
    concepts = ["glasses", "smile"]
    cases = {"2 edits": None, "2 edits, cool-down at half": half}

    def ours(cooldown):
        edits = [Edit(c, scale=5, threshold=0.9, warmup=args.warmup, cooldown=cooldown) for c in concepts]
        return lambda: pipe(
            **common, edits=edits, max_unet_batch=args.max_batch, edit_refresh=args.edit_refresh,
            edit_momentum_scale=args.momentum,
            generator=torch.Generator().manual_seed(0),
        )  # fmt: skip

    def theirs(cooldown):
        return lambda: community_schedule(pipe, common["prompt"], concepts, [args.warmup] * 2, [cooldown] * 2,
                                          args.steps, args.images, args.size, args.seq)  # fmt: skip

    ours(None)()
    theirs(None)()
    n_params = sum(p.numel() for p in pipe.transformer.parameters()) / 1e6
    print(f"FLUX-shaped transformer, random weights, {n_params:.1f}M parameters; {args.size}x{args.size} images")
    print(
        f"steps {args.steps}, images {args.images}, threads {torch.get_num_threads()}, repeats {args.repeats} (median); "
        f"segakit's edit_refresh {args.edit_refresh}, momentum {args.momentum:g}, rows per call {args.max_batch or 'all'}"
    )
    results = {}
    for name, cooldown in cases.items():
        t_ours, t_ref = [], []
        for _ in range(args.repeats):
            t_ref += median_time(theirs(cooldown), 1)
            t_ours += median_time(ours(cooldown), 1)
        results[name] = (statistics.median(t_ours), statistics.median(t_ref))
        o, r = results[name]
        print(f"  {name:28s} ours {o:7.2f} s   community schedule {r:7.2f} s   ratio {o / r:.3f}")

    forward = pipe.transformer.forward
    inside: list[float] = []

    def timed_forward(*a, **k):
        t = time.perf_counter()
        out = forward(*a, **k)
        inside.append(time.perf_counter() - t)
        return out

    pipe.transformer.forward = timed_forward
    shares = []
    for _ in range(args.repeats):
        inside.clear()
        total = median_time(ours(None), 1)[0]
        shares.append(total / sum(inside))
    pipe.transformer.forward = forward
    print()
    print(
        f"ours / community schedule, 2 edits:                 {results['2 edits'][0] / results['2 edits'][1]:.3f}  (target <= 1.0)"
    )
    r = results["2 edits, cool-down at half"]
    print(f"ours / community schedule, 2 edits cooling halfway: {r[0] / r[1]:.3f}  (target <= 0.8)")
    print(f"ours / bare transformer calls (in-run):             {statistics.median(shares):.4f}  (target <= 1.03)")
    if args.splits:
        print_splits(pipe, args)


def print_splits(pipe, args, rows: int = 12) -> None:
    """How the cost of a step's rows depends on how many transformer calls they are split into, on this machine."""
    fam = pipe.family
    fam.max_sequence_length = args.seq
    fam.guidance(3.5, 1.0)
    cond = fam.encode(["a face of a person"], pipe.device)
    x = torch.randn(fam.latent_shape(rows, args.size, args.size), generator=torch.Generator().manual_seed(0))
    t = torch.tensor(500.0)
    times: dict[int, list[float]] = {}
    with torch.no_grad():
        for _ in range(args.repeats * 3):
            for calls in (1, 2, 3, 4, 6, 12):
                n = rows // calls
                xs, cs = x[:n].contiguous(), cond.repeat_rows(n)
                start = time.perf_counter()
                for _ in range(calls):
                    fam.predict(xs, t, cs)
                times.setdefault(calls, []).append(time.perf_counter() - start)
    one = statistics.median(times[1])
    print(f"\n{rows} rows as K calls, time over one call of {rows} (median of {args.repeats * 3}):")
    print("  " + "   ".join(f"{k} x {rows // k}: {statistics.median(v) / one:.3f}" for k, v in times.items()))


if __name__ == "__main__":
    main()
