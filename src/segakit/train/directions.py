"""Recipe: the embedded model's direction library -- one self-discovered direction per attribute value.

Each direction is learned from the model's own images (segakit.directions.learn): ``attribute=value`` from
"a face of a person <phrase>" against "a face of a person"; the anti-horror direction, as the paper learns
anti-concepts, from the neutral prompt with "a zombie" as the negative prompt (conditioning the U-Net on "a zombie"
instead while learning was measured and not adopted: it removes horror only at strengths that break the image;
benchmarks/directions_safety.py, docs/directions.md). Latents are cached (a killed run resumes), finished
directions are skipped, and library.json is rewritten (atomically) after each one, naming the model weights it
was learned on and the strengths of the directions used at another strength than the rest (``--strengths``).

    python -m segakit.train.directions                                  # the whole library into assets/directions
    python -m segakit.train.directions --only presentation,skin,horror  # some attributes
    python -m segakit.train.directions --images 16 --steps 20 --out /tmp/lib --only presentation   # smoke
    python -m segakit.train.directions --workers 2                      # images in 2 worker processes (or --ray auto)
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from segakit.core.atomic import atomic_open, ensure_writable_dir
from segakit.core.fingerprint import fingerprint
from segakit.directions.learn import LearnConfig, learn_direction, shards_on
from segakit.directions.library import SAFE, default_library_path
from segakit.jobs.calls import CallRunner
from segakit.jobs.executors import open_executor, wants_workers
from segakit.jobs.worker import WorkerConfig
from segakit.train.config import parse_config

NEUTRAL = "a face of a person"
# attribute=value -> (positive prompt, negative prompt)
RECIPES: dict[str, tuple[str, str | None]] = {
    "presentation=man": ("a face of a man", None),
    "presentation=woman": ("a face of a woman", None),
    **{
        f"skin={v}": (f"a face of a person with {v} skin", None)
        for v in ("light", "medium-light", "medium", "medium-dark", "dark")
    },
    SAFE: (NEUTRAL, "a zombie"),
    "glasses=true": ("a face of a person wearing glasses", None),
    "hat=true": ("a face of a person wearing a hat", None),
    "expression=smile": ("a face of a smiling person", None),
    "expression=frown": ("a face of a frowning person", None),
    "bangs=true": ("a face of a person with bangs", None),
    "beard=true": ("a face of a person with a beard", None),
    "makeup=true": ("a face of a person wearing makeup", None),
    "hair_style=curly": ("a face of a person with curly hair", None),
}


@dataclass
class DirectionsConfig:
    model: str = "embedded"
    out: str = ""  # default: the model's shipped library (segakit/assets/directions, directions-flow for embedded-flow)
    cache: str = "runs/directions-cache"
    only: str = ""  # comma-separated attributes (or attribute=value names); default: all
    images: int = 64
    steps: int = 300
    batch: int = 8
    lr: float = 0.1
    seed: int = 0
    threads: int = 0
    workers: int = 1  # processes that make the images (the batch runner's local workers); learning runs here
    ray: str = ""  # or the Ray cluster's actors: "auto", an address, or "local"
    # the strength the library is used at by default: on the embedded model a direction learned with these settings
    # draws its concept at 0.25-0.5 and starts to break the image from about 1 (benchmarks/directions.py's strip);
    # fair presentation on "a doctor" needs 0.5 (benchmarks/directions_fair.py)
    strength: float = 0.5
    # directions used at another strength than `strength` ("NAME:S,..."): the presentation directions at 1.0, where
    # they draw the value on the roles the model draws as the other one and the image stays a face. On model v3
    # (`python benchmarks/directions_fair.py --seeds 24 --strengths 0.5,0.75,1,1.25`): firefighters drawn "woman"
    # read as women in 96% of 24 seeds at 1.0, 83% at 0.75 (v2's strength), 58% at 0.5; doctors and nurses 100% from
    # 1.0. The anti-horror direction has none: no strength removes horror without breaking the image
    # (benchmarks/directions_safety.py).
    strengths: str = "presentation=man:1.0,presentation=woman:1.0"


def parse_strengths(text: str) -> dict[str, float]:
    """``"presentation=man:0.75,..."`` -> {"presentation=man": 0.75, ...}; a bad item is a UserError."""
    from segakit.core.errors import UserError

    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, _, value = item.rpartition(":")
        try:
            out[name] = float(value)
        except ValueError:
            raise UserError(f"--strengths {item!r}: write NAME:STRENGTH, e.g. presentation=woman:0.75.") from None
        if name not in RECIPES:
            raise UserError(
                f"--strengths {item!r}: {name!r} is not one of the recipe's directions ({', '.join(RECIPES)})."
            )
    return out


def main(argv: list[str] | None = None) -> Path:
    cfg = parse_config(DirectionsConfig, argv)
    strengths = parse_strengths(cfg.strengths)  # a bad item fails before the model loads
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    from segakit.sega.pipeline import SegaPipeline

    default = default_library_path(cfg.model)
    if not cfg.out and default is None:
        from segakit.core.errors import UserError

        raise UserError(f"--out is needed for model {cfg.model!r}: only the embedded models have a library folder of "
                        "their own (segakit/assets/directions, directions-flow).")  # fmt: skip
    out = ensure_writable_dir(Path(cfg.out) if cfg.out else default)
    wanted = [w.strip() for w in cfg.only.split(",") if w.strip()]
    names = [n for n in RECIPES if not wanted or n in wanted or n.split("=")[0] in wanted]
    pipe = SegaPipeline.from_pretrained(cfg.model)
    unet_id = fingerprint(pipe.family.denoiser)  # the U-Net or the transformer ("unet" in library.json)
    index_path = out / "library.json"
    index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    if index.get("unet") != unet_id:  # another model: start the library over
        index = {"directions": {}}
    index.update({"model": cfg.model, "unet": unet_id, "strength": cfg.strength, "neutral": NEUTRAL})
    index.pop("strengths", None)
    if strengths:
        index["strengths"] = strengths
    elsewhere = wants_workers(cfg.workers, cfg.ray)  # else this process makes the images, as it always did
    with (
        open_executor(cfg.workers, cfg.ray, WorkerConfig(threads=cfg.threads or 1))
        if elsewhere
        else contextlib.nullcontext() as ex
    ):
        runner = CallRunner(ex, cfg.model) if elsewhere else None
        for name in names:
            file = name.replace("=", "-") + ".safetensors"
            if name in index["directions"] and (out / file).is_file():
                print(f"{name}: done already ({file})")
                continue
            positive, negative = RECIPES[name]
            t0 = time.perf_counter()
            learn = LearnConfig(name, positive=positive, neutral=NEUTRAL, negative=negative, images=cfg.images, steps=cfg.steps,
                                batch=cfg.batch, lr=cfg.lr, seed=cfg.seed)  # fmt: skip
            d = learn_direction(pipe, learn, cfg.cache, make_shards=shards_on(runner.imap, learn) if runner else None)
            d.meta["model"] = cfg.model
            d.save(out / file)
            index["directions"][name] = file
            _drop_calibration(index, name.split("=", 1)[0])
            save_index(index_path, index)
            print(
                f"{name}: loss {d.meta['first_loss']:.4f} -> {d.meta['final_loss']:.4f} in {time.perf_counter() - t0:.0f} s -> {file}",
                flush=True,
            )
    save_index(index_path, index)  # also when nothing was learned: new --strengths take effect
    return out


def _drop_calibration(index: dict, attribute: str) -> None:
    """A relearned direction voids its attribute's calibration (python -m segakit.train.calibrate_directions)."""
    recipes = index.get("recipes", {})
    dropped = [n for n in recipes if n.split("=", 1)[0] == attribute]
    for n in dropped:
        del recipes[n]
    drew = index.get("draws", {}).pop(attribute, None) is not None
    if index.get("calibration", {}).pop(attribute, None) is not None or dropped or drew:
        print(
            f"{attribute}: its calibration no longer holds; rerun python -m segakit.train.calibrate_directions --attribute {attribute}"
        )


def save_index(path: Path, index: dict) -> None:
    with atomic_open(path, "w") as fh:
        json.dump(index, fh, indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
