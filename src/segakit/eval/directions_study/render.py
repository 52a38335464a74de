"""Making the study's images: every arm (plain, directions, fair, SLD, negative prompt, SEGA reverse edit) in one
function, :func:`render`, on a plain loop over batches of seeds (image i from its own generator, seed i).

With workers (``--workers``, ``--ray``) the same chunks go through the batch runner: :func:`render_chunk` is one
chunk as a function a worker runs (``fn(pipe, *args)``, :mod:`segakit.jobs.calls`), loading the library and SLD's
pipeline once per worker process. Images are kept as 8-bit tensors, as a PNG stores them; every measure is taken
on those.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from segakit.directions.library import Library
from segakit.eval.directions_study.config import Arm, DirectionsStudyConfig
from segakit.eval.directions_study.sld import sld_images, sld_pipeline
from segakit.sega.fair import FairDiffusion, fair_generate
from segakit.sega.guidance import Edit


def quantize(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) floats in [0, 1] -> uint8."""
    return (images.float().clamp(0, 1) * 255).round().to(torch.uint8)


@dataclass
class Bench:
    """The model, its direction library and the study's settings; SLD's pipeline is built on first use."""

    pipe: object
    library: Library
    cfg: DirectionsStudyConfig
    _sld: object = field(default=None, repr=False)

    @property
    def strength(self) -> float:
        return self.library.strength if self.cfg.strength is None else self.cfg.strength

    def strength_of(self, name: str) -> float:
        """Direction ``name``'s strength: --strength, else the library's for it."""
        return self.library.strength_of(name) if self.cfg.strength is None else self.cfg.strength

    def sld(self):
        if self._sld is None:
            self._sld = sld_pipeline(self.pipe)
        return self._sld


def _chunk(bench: Bench, arm: Arm, prompt: str, seeds: list[int], strength: float | None) -> torch.Tensor:
    """One batch of images (floats in [0, 1]) of ``prompt`` for ``seeds``."""
    pipe, lib, cfg = bench.pipe, bench.library, bench.cfg
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    s = strength  # None: each direction at the bench's strength for it
    common = {"num_inference_steps": cfg.steps, "guidance_scale": cfg.guidance, "generator": gens, "output_type": "pt"}
    if arm.kind == "sld":
        return sld_images(bench.sld(), prompt, gens, cfg.steps, arm.param, cfg.guidance)
    if arm.kind == "fair-sega":
        return fair_generate(pipe, prompt, FairDiffusion.draw(arm.param, len(seeds), seeds[0]), **common).images
    if arm.kind == "fair-rewrite":  # Fair Diffusion's draw and words, the word in the prompt instead of an edit
        draw = FairDiffusion.draw(arm.param, len(seeds), seeds[0])
        return pipe([rewrite(prompt, draw.words[v]) for v in draw.choices], **common).images
    directions, edits, negative = [], [], None
    if arm.kind == "directions":
        directions = [lib.direction(n).at(bench.strength_of(n) if s is None else s) for n in arm.names]
    elif arm.kind == "fair-directions":
        directions = [lib.fair(arm.param, len(seeds), seeds[0], strength=cfg.strength if s is None else s)]
    elif arm.kind == "negative":
        negative = arm.param
    elif arm.kind == "sega-reverse":
        edits = [Edit(arm.param, reverse=True)]
    elif arm.kind != "plain":
        raise ValueError(f"unknown arm kind {arm.kind!r}")
    return pipe(prompt, num_images_per_prompt=len(seeds), negative_prompt=negative, edits=edits, directions=directions,
                **common).images  # fmt: skip


def rewrite(prompt: str, word: str) -> str:
    """The prompt naming a value: ``"a doctor"`` + ``"woman"`` -> ``"a doctor, woman"``."""
    return f"{prompt}, {word}"


def render(
    bench: Bench, arm: Arm, prompt: str, seeds: list[int], strength: float | None = None, progress=None
) -> torch.Tensor:
    """``arm``'s images of ``prompt`` for ``seeds`` (contiguous), in batches of ``cfg.batch``: (N, 3, H, W) uint8.

    ``strength`` overrides the strength of the arm's directions (the monotonicity sweep)."""
    out = []
    for first in range(0, len(seeds), bench.cfg.batch):
        part = seeds[first : first + bench.cfg.batch]
        out.append(quantize(_chunk(bench, arm, prompt, part, strength).cpu()))
        if progress:
            progress(len(part))
    return torch.cat(out)


def fair_choices(bench: Bench, arm: Arm, seeds: list[int]) -> list[str]:
    """The values a fair arm drew for ``seeds`` (image i from seed i; both fair methods draw the same unless the
    library's calibration gives its own draw shares, ``draws`` in library.json)."""
    if arm.kind == "fair-directions":
        return bench.library.fair(arm.param, len(seeds), seeds[0], strength=bench.cfg.strength).choices
    return FairDiffusion.draw(arm.param, len(seeds), seeds[0]).choices


_BENCHES: dict[tuple, Bench] = {}  # per worker process: the bench of each pipeline, library folder and config


def render_chunk(pipe, library: str, cfg: DirectionsStudyConfig, arm: Arm, prompt: str, seeds: list[int],
                 strength: float | None) -> torch.Tensor:  # fmt: skip
    """One chunk of :func:`render` (8-bit images of ``seeds``) on ``pipe`` with the library in folder ``library``."""
    key = (id(pipe), library, cfg)
    if key not in _BENCHES:
        _BENCHES.clear()  # one at a time: a worker keeps the bench of the pipeline it holds
        _BENCHES[key] = Bench(pipe, Library.load(library), cfg)
    return quantize(_chunk(_BENCHES[key], arm, prompt, seeds, strength).cpu())


def chunk_args(bench: Bench, arm: Arm, prompt: str, seeds: list[int], strength: float | None = None) -> list[tuple]:
    """The arguments of :func:`render_chunk` for :func:`render`'s chunks of ``seeds``."""
    step = bench.cfg.batch
    return [
        (str(bench.library.folder), bench.cfg, arm, prompt, seeds[i : i + step], strength)
        for i in range(0, len(seeds), step)
    ]
