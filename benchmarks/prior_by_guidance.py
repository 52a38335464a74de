"""Where the embedded model's prior gap comes from: attribute shares of a neutral prompt across guidance scales.

`segakit eval embedded` measures prior fidelity at the default guidance (7.5) only. This diagnostic draws the same
seeds of the neutral prompt at several guidance scales (1 is the conditional model alone, no guidance) and of the
empty prompt (the unconditional model the captions' 10% of empty captions train), has the oracle read them, and
prints, per setting, the worst |generated share - training prior| and the attributes behind it. If the gap grows
with guidance, classifier-free guidance amplifies a small conditional/unconditional difference (a guidance or
training question); if it is there at guidance 1 and in the unconditional model, the model's own distribution is
off (a training question).

    python benchmarks/prior_by_guidance.py --seeds 300 --guidance 1,3,7.5 --out docs/results/embedded/prior-by-guidance.json

``--samplers`` repeats every setting with other diffusers schedulers and step counts (``NAME:STEPS``, NAME one of
ddim, ddim-trailing, euler-a, ddpm, dpm): a gap that shrinks with more steps or with a stochastic sampler lies
partly in the sampler, not in the model's weights.

    python benchmarks/prior_by_guidance.py --seeds 300 --guidance 7.5 --samplers ddim:25,ddim:100,euler-a:50,ddpm:100 \
        --out docs/results/embedded/prior-by-sampler.json
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

from segakit.core.atomic import write_json  # noqa: E402
from segakit.core.fingerprint import pipeline_fingerprint  # noqa: E402
from segakit.eval.embedded_quality import sample_images  # noqa: E402
from segakit.sega.pipeline import SegaPipeline  # noqa: E402
from segakit.world.oracle import Oracle  # noqa: E402
from segakit.world.schema import ATTRIBUTES, PRIORS  # noqa: E402


def shares(labels: list[dict]) -> dict[str, dict[str, tuple[float, float]]]:
    """attribute -> value -> (generated share, training prior); hair colour over the images with hair."""
    out = {}
    for attr, values in ATTRIBUTES.items():
        rows = [lab for lab in labels if not (attr == "hair_color" and lab["hair_style"] == "bald")]
        out[attr] = {str(v).lower() if isinstance(v, bool) else v: (sum(lab[attr] == v for lab in rows) / max(len(rows), 1), float(PRIORS[attr][v]))
                     for v in values}  # fmt: skip
    return out


def schedulers() -> dict:
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler

    return {"ddim": (DDIMScheduler, {}), "ddim-trailing": (DDIMScheduler, {"timestep_spacing": "trailing"}),
            "euler-a": (EulerAncestralDiscreteScheduler, {}), "ddpm": (DDPMScheduler, {}), "dpm": (DPMSolverMultistepScheduler, {})}  # fmt: skip


def parse_samplers(text: str) -> list[tuple[str, int]]:
    out, known = [], schedulers()
    for item in filter(None, (x.strip() for x in text.split(","))):
        name, _, steps = item.partition(":")
        if name not in known or not steps.isdigit() or int(steps) < 1:
            raise SystemExit(
                f"--samplers {item!r}: use NAME:STEPS with NAME one of {', '.join(known)} and STEPS 1 or more."
            )
        out.append((name, int(steps)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompt", default="a face of a person")
    ap.add_argument("--seeds", type=int, default=300)
    ap.add_argument("--guidance", default="1,3,7.5")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--samplers", default="", help="NAME:STEPS,... (default: the model's own scheduler at --steps)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("out/prior-by-guidance.json"))
    args = ap.parse_args()
    samplers = parse_samplers(args.samplers) if args.samplers else [("", args.steps)]  # a bad one fails before loading
    torch.set_num_threads(args.threads)
    pipe = SegaPipeline.from_pretrained("embedded")
    pipe.set_progress_bar_config(disable=True)
    oracle = Oracle.load()
    seeds = [100_000 + i for i in range(args.seeds)]  # the quality table's neutral seeds
    settings = [("", 1.0)] + [(args.prompt, float(g)) for g in args.guidance.split(",")]
    own = pipe.scheduler.config
    report = {"command": "python benchmarks/prior_by_guidance.py " + " ".join(os.sys.argv[1:]), "model": pipeline_fingerprint(pipe),
              "seeds": [seeds[0], seeds[-1]], "settings": []}  # fmt: skip
    print("| sampler | prompt | guidance | worst gap | largest gaps (generated / prior) |\n|---|---|---|---|---|")
    for sampler, steps in samplers:
        if sampler:
            cls, extra = schedulers()[sampler]
            pipe.scheduler = cls.from_config(own, **extra)
        name = f"{sampler or type(pipe.scheduler).__name__}, {steps} steps"
        for prompt, g in settings:
            labels = oracle.predict(sample_images(pipe, prompt, seeds, steps, g, args.batch))
            table = shares(labels)
            gaps = sorted(
                (
                    (abs(gen - pri), f"{a} {v}: {gen:.2f} / {pri:.2f}")
                    for a, vals in table.items()
                    for v, (gen, pri) in vals.items()
                ),
                reverse=True,
            )
            report["settings"].append({"sampler": sampler or type(pipe.scheduler).__name__, "steps": steps, "prompt": prompt,
                                       "guidance": g, "worst_gap": gaps[0][0], "table": table})  # fmt: skip
            print(
                f"| {name} | {prompt!r} | {g:g} | {gaps[0][0]:.3f} | " + "; ".join(t for _, t in gaps[:3]) + " |",
                flush=True,
            )
    print(f"\n{write_json(args.out, report)}")


if __name__ == "__main__":
    main()
