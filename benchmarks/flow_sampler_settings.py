"""Does the sampler decide a flow model's weak attributes? Text faithfulness per attribute under sampler settings.

Diagnose before training more: if an attribute the prompts name is missed because of how the model is *sampled*
(the sigma shift, the number of Euler steps, the guidance scale), changing those fixes it for free; if it is missed
under every setting, the transformer has not learned it. For each setting ``GUIDANCE/SHIFT/STEPS`` this runs the
quality table's text faithfulness (``segakit.eval.embedded_quality.text_faithfulness``: the same prompts and seeds
for every setting) with the scheduler's ``shift`` replaced, and prints one table, settings side by side.
With ``--fd N`` it also draws N plain images of the quality table's neutral prompt per setting and reports their
Frechet distance to the world's renders and the worst prior gap (as the quality table, at N instead of 2,000 / 500:
compare settings with each other, and with another model only at the same N). ``--prompts 0`` skips faithfulness.

    python benchmarks/flow_sampler_settings.py --model embedded-flow --threads 1
    python benchmarks/flow_sampler_settings.py --model FOLDER --settings 7.5/1/25,7.5/3/25,12/1/25 --prompt-seeds 2
    python benchmarks/flow_sampler_settings.py --prompts 0 --fd 500 --settings 7.5/1/25,4.5/1/25,3/1/25,7.5/3/25
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402
from diffusers import FlowMatchEulerDiscreteScheduler  # noqa: E402

from segakit.eval.embedded_quality import (  # noqa: E402
    QualityConfig,
    image_quality,
    neutral_images,
    prior_fidelity,
    text_faithfulness,
)
from segakit.sega.pipeline import SegaPipeline  # noqa: E402
from segakit.world.oracle import Oracle  # noqa: E402

DEFAULT_SETTINGS = "7.5/1/25,7.5/3/25,7.5/1/50,4.5/1/25,12/1/25"


def parse_settings(text: str) -> list[tuple[float, float, int]]:
    out = []
    for item in text.split(","):
        parts = item.strip().split("/")
        try:
            g, shift, steps = float(parts[0]), float(parts[1]), int(parts[2])
        except (ValueError, IndexError):
            raise SystemExit(f"--settings item {item!r} is not GUIDANCE/SHIFT/STEPS, such as 7.5/1/25.") from None
        if g < 1 or shift <= 0 or steps < 1:
            raise SystemExit(f"--settings item {item!r}: guidance is 1 or more, shift above 0, steps 1 or more.")
        out.append((g, shift, steps))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model",
        default="embedded-flow",
        help="'embedded-flow', an SD3/FLUX folder, or a U-Net model at shift 1 to compare",
    )
    ap.add_argument("--settings", default=DEFAULT_SETTINGS, help="comma-separated GUIDANCE/SHIFT/STEPS")
    ap.add_argument("--prompts", type=int, default=100)
    ap.add_argument("--prompt-seeds", type=int, default=2)
    ap.add_argument("--fd", type=int, default=0, help="also the Frechet distance and prior gap on N neutral images")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    if args.prompts < 0 or args.prompt_seeds < 1:
        raise SystemExit(f"--prompts must be 0 or more and --prompt-seeds 1 or more, got {args.prompts} and "
                         f"{args.prompt_seeds}.")  # fmt: skip
    if args.fd < 0 or args.fd == 1 or (args.prompts == 0 and args.fd == 0):
        raise SystemExit(f"--fd must be 0 (off) or 2 or more, and --prompts 0 needs --fd; got --fd {args.fd}.")
    settings = parse_settings(args.settings)
    torch.set_num_threads(args.threads)
    pipe = SegaPipeline.from_pretrained(args.model)
    flow = isinstance(pipe.scheduler, FlowMatchEulerDiscreteScheduler)
    if not flow and any(shift != 1 for _, shift, _ in settings):
        raise SystemExit(f"--model {args.model!r} is not a flow model, so its --settings take shift 1 only (the "
                         "shift is a flow sampler's); use it to read the U-Net model beside a flow model.")  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    config = dict(pipe.scheduler.config)
    oracle = Oracle.load()
    rows = []
    for g, shift, steps in settings:
        if flow:
            pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(config, shift=shift)
        cfg = QualityConfig(steps=steps, n_prompts=args.prompts, prompt_seeds=args.prompt_seeds, guidance=g,
                            fid_n=args.fd, prior_seeds=args.fd)  # fmt: skip
        t = time.perf_counter()
        tf = text_faithfulness(pipe, oracle, cfg) if args.prompts else None
        fd = prior = None
        if args.fd:
            images = neutral_images(pipe, cfg, args.fd, None, None)
            fd = image_quality(pipe, oracle, cfg, images=images)
            prior = prior_fidelity(pipe, oracle, cfg, images=images)
        rows.append((f"{g:g} / {shift:g} / {steps}", tf, fd, prior))
        read = [f"faithfulness {tf['present']:.3f}"] if tf else []
        read += [f"Frechet {fd['fd_generated_vs_rendered']:.1f}, prior gap {prior['max_abs_diff']:.3f}"] if fd else []
        print(f"guidance {g:g}, shift {shift:g}, {steps} steps: {'; '.join(read)} ({time.perf_counter() - t:.0f} s)",
              flush=True)  # fmt: skip
    print(f"\nmodel {args.model} (scheduler shift {config.get('shift')}); {args.prompts} prompts x "
          f"{args.prompt_seeds} seeds, {args.fd} neutral images, the same for every setting; "
          f"threads {torch.get_num_threads()}")  # fmt: skip
    print("| guidance / shift / steps | " + " | ".join(row[0] for row in rows) + " |")
    print("|---|" + "---:|" * len(rows))
    if args.fd:
        print(f"| Frechet distance, n = {args.fd} | "
              + " | ".join(f"{fd['fd_generated_vs_rendered']:.1f}" for _, _, fd, _ in rows) + " |")  # fmt: skip
        print(f"| autoencoder floor, n = {args.fd} | "
              + " | ".join(f"{fd['fd_autoencoder_vs_rendered']:.1f}" for _, _, fd, _ in rows) + " |")  # fmt: skip
        print(f"| worst prior gap, n = {args.fd} | "
              + " | ".join(f"{prior['max_abs_diff']:.3f}" for _, _, _, prior in rows) + " |")  # fmt: skip
    if args.prompts:
        print("| faithfulness | " + " | ".join(f"{tf['present']:.3f}" for _, tf, _, _ in rows) + " |")
        for a in rows[0][1]["per_attribute"]:
            print(f"| {a} | " + " | ".join(f"{tf['per_attribute'][a]:.3f}" for _, tf, _, _ in rows) + " |")


if __name__ == "__main__":
    main()
