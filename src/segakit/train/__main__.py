"""Retrain the embedded model end to end, resuming whatever is already done (``make train-embedded``).

Stages, in order, each in ``$SEGAKIT_RUNS/<stage>`` (default ``runs/embedded``):
tokenizer -> autoencoder -> clip -> text_encoder (CLIP v2, issue 15) -> cache -> decoder (fine-tune with the encoder
frozen) -> unet -> assemble
(into ``src/segakit/assets/embedded``).
A stage whose result exists is skipped; an interrupted stage resumes from its checkpoint.

    python -m segakit.train --threads 1
    python -m segakit.train --device cuda --stages unet,assemble --unet.max_steps 20000

``--<stage>.<field> value`` passes a config field to one stage (see ``python -m segakit.train.<stage> -h``).
"""

from __future__ import annotations

import argparse
import time

from segakit.train.config import runs_root, text_encoder_done

STAGES = ("tokenizer", "autoencoder", "clip", "text_encoder", "cache", "decoder", "unet", "assemble")
# The decoder stage: the autoencoder's decoder fine-tuned with its encoder frozen (latents unchanged).
DECODER_ARGS = [
    "--decoder_only",
    "true",
    "--max_steps",
    "4000",
    "--lr",
    "2e-4",
    "--warmup",
    "50",
    "--data_offset",
    "1000000",
]


def _done(stage: str) -> bool:
    root = runs_root()
    return {
        "tokenizer": (root / "tokenizer" / "tokenizer_config.json").is_file(),
        "autoencoder": (root / "autoencoder" / "final").is_dir(),
        "decoder": (root / "decoder" / "final").is_dir(),
        "clip": (root / "clip" / "final").is_dir() and (root / "clip" / "text_encoder").is_dir(),
        "text_encoder": text_encoder_done(root),
        "cache": (root / "cache" / "DONE.json").is_file(),
    }.get(stage, False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--stages", default=",".join(STAGES))
    args, rest = parser.parse_known_args(argv)
    extra: dict[str, list[str]] = {s: [] for s in STAGES}
    i = 0
    while i < len(rest):
        stage, _, field = rest[i].removeprefix("--").partition(".")
        if stage not in extra or not field or i + 1 >= len(rest):
            parser.error(f"unexpected argument {rest[i]!r}; per-stage options look like --unet.max_steps 1000")
        extra[stage] += [f"--{field}", rest[i + 1]]
        i += 2
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    for s in stages:
        if s not in STAGES:
            parser.error(f"unknown stage {s!r}; stages: {', '.join(STAGES)}")
    common = ["--device", args.device, "--threads", str(args.threads)]
    print(f"train-embedded: runs in {runs_root()}, stages {', '.join(stages)}", flush=True)
    for stage in stages:
        if _done(stage):
            print(f"[{stage}] done already, skipped", flush=True)
            continue
        t0 = time.time()
        print(f"[{stage}] starting", flush=True)
        if stage == "tokenizer":
            from segakit.train import tokenizer

            tokenizer.main(extra[stage])
        elif stage == "autoencoder":
            from segakit.train import autoencoder

            autoencoder.main(common + extra[stage])
        elif stage == "decoder":
            from segakit.train import autoencoder

            autoencoder.main(common + DECODER_ARGS + extra[stage])
        elif stage == "clip":
            from segakit.train import clip

            clip.main(common + extra[stage])
        elif stage == "text_encoder":  # continues the clip stage's CLIP
            from segakit.train import text_encoder

            root = runs_root()
            defaults = ["--init", str(root / "clip" / "final"), "--tokenizer", str(root / "tokenizer")]
            text_encoder.main(common + defaults + extra[stage])
        elif stage == "cache":
            from segakit.train import cache

            cache.main(common + extra[stage])
        elif stage == "unet":
            from segakit.train import unet

            unet.main(common + extra[stage])
        elif stage == "assemble":
            from segakit.train import embedded

            embedded.main(extra[stage])
        print(f"[{stage}] finished in {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
