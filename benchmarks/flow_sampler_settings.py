"""Does the sampler decide a flow model's weak attributes? Text faithfulness per attribute under sampler settings.

Diagnose before training more: if an attribute the prompts name is missed because of how the model is *sampled*
(the sigma shift, the number of Euler steps, the guidance scale), changing those fixes it for free; if it is missed
under every setting, the transformer has not learned it. For each setting ``GUIDANCE/SHIFT/STEPS`` this runs the
quality table's text faithfulness (``segakit.eval.embedded_quality.text_faithfulness``: the same prompts and seeds
for every setting) with the scheduler's ``shift`` replaced, and prints one table, settings side by side.

    python benchmarks/flow_sampler_settings.py --model embedded-flow --threads 1
    python benchmarks/flow_sampler_settings.py --model FOLDER --settings 7.5/1/25,7.5/3/25,12/1/25 --prompt-seeds 2
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

from segakit.eval.embedded_quality import QualityConfig, text_faithfulness  # noqa: E402
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
    ap.add_argument("--model", default="embedded-flow", help="a flow model: 'embedded-flow' or an SD3/FLUX folder")
    ap.add_argument("--settings", default=DEFAULT_SETTINGS, help="comma-separated GUIDANCE/SHIFT/STEPS")
    ap.add_argument("--prompts", type=int, default=100)
    ap.add_argument("--prompt-seeds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    settings = parse_settings(args.settings)
    torch.set_num_threads(args.threads)
    pipe = SegaPipeline.from_pretrained(args.model)
    if not isinstance(pipe.scheduler, FlowMatchEulerDiscreteScheduler):
        raise SystemExit(
            f"--model {args.model!r} does not sample with FlowMatchEulerDiscreteScheduler; pick a flow model."
        )
    pipe.set_progress_bar_config(disable=True)
    config = dict(pipe.scheduler.config)
    oracle = Oracle.load()
    rows = []
    for g, shift, steps in settings:
        pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(config, shift=shift)
        cfg = QualityConfig(steps=steps, n_prompts=args.prompts, prompt_seeds=args.prompt_seeds, guidance=g)
        t = time.perf_counter()
        tf = text_faithfulness(pipe, oracle, cfg)
        rows.append((f"{g:g} / {shift:g} / {steps}", tf))
        print(f"guidance {g:g}, shift {shift:g}, {steps} steps: {tf['present']:.3f} ({time.perf_counter() - t:.0f} s)",
              flush=True)  # fmt: skip
    print(f"\nmodel {args.model} (scheduler shift {config.get('shift')}); {args.prompts} prompts x "
          f"{args.prompt_seeds} seeds, the same for every setting; threads {torch.get_num_threads()}")  # fmt: skip
    print("| guidance / shift / steps | " + " | ".join(name for name, _ in rows) + " |")
    print("|---|" + "---:|" * len(rows))
    print("| overall | " + " | ".join(f"{tf['present']:.3f}" for _, tf in rows) + " |")
    for a in rows[0][1]["per_attribute"]:
        print(f"| {a} | " + " | ".join(f"{tf['per_attribute'][a]:.3f}" for _, tf in rows) + " |")


if __name__ == "__main__":
    main()
