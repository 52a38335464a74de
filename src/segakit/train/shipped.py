"""Seed a runs folder with the shipped model's parts, so that training continues from what ships.

A training run's folder does not outlive the machine it ran on; the shipped model does. This copies the
shipped tokenizer, text encoder, CLIP and autoencoder into ``$SEGAKIT_RUNS`` (with their provenance from
``segakit.json`` as each part's ``training.json``), which marks those stages done; the cache and the U-Net
then continue from them::

    python -m segakit.train.shipped                                   # into $SEGAKIT_RUNS
    python -m segakit.train --stages cache,unet,assemble --cache.start 100000 --unet.init embedded

Parts already present in the runs folder are left alone.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from segakit.train.config import parse_config, runs_root
from segakit.train.embedded import DEFAULT_OUT

# shipped folder -> (place in the runs folder, key of its provenance in segakit.json)
PARTS = {
    "tokenizer": ("tokenizer", "tokenizer"),
    "text_encoder": ("clip/text_encoder", "clip"),
    "clip": ("clip/final", "clip"),
    "vae": ("autoencoder/final", "autoencoder"),
}


@dataclass
class ShippedConfig:
    model: str = ""  # default: the shipped model (src/segakit/assets/embedded)
    runs: str = ""  # default: $SEGAKIT_RUNS


def seed_runs(model: Path, runs: Path) -> list[str]:
    """Copy the parts of ``model`` that ``runs`` lacks; returns the places written."""
    info_file = model / "segakit.json"
    if not info_file.is_file():
        raise SystemExit(f"{model} is not an assembled embedded model (no segakit.json).")
    training = json.loads(info_file.read_text()).get("training", {})
    written = []
    for part, (place, key) in PARTS.items():
        dest = runs / place
        if dest.exists():
            continue
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(model / part, tmp)
        provenance = training.get(key)
        if provenance:
            (tmp / "training.json").write_text(json.dumps(provenance, indent=1))
        tmp.rename(dest)
        written.append(place)
    return written


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(ShippedConfig, argv)
    runs = Path(cfg.runs) if cfg.runs else runs_root()
    written = seed_runs(Path(cfg.model) if cfg.model else DEFAULT_OUT, runs)
    print(f"seeded {runs} with {', '.join(written) if written else 'nothing (every part was there)'}", flush=True)


if __name__ == "__main__":
    main()
