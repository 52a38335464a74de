"""The SEGA study's parameters (:class:`StudyConfig`), what it tells a progress display, and the paper's rates."""

from __future__ import annotations

import math
from dataclasses import dataclass

from segakit.core.errors import UserError
from segakit.eval.targets import (
    Target,
    by_name,
)
from segakit.sega.defaults import EMBEDDED_EDIT
from segakit.sega.guidance import Edit

UNIQUE_PROMPTS = (
    "a portrait of a smiling woman",
    "a photo of a man with a beard",
    "a cartoon of a person with red hair",
    "a drawing of a chef",
    "a face of a person wearing a hat",
)
# The paper's user-study rates, as issue 5 quotes them.
PAPER = {"additions": 0.95, "removals": 0.92, "all_four": (0.91, 0.76)}


@dataclass(frozen=True)
class StudyConfig:
    """The study's parameters. Every field enters the cache keys of the units it affects (``batch`` too: the
    composition of a batch can move the last bits of a U-Net result, and with them a borderline label).

    Edit defaults: the embedded model's (:data:`segakit.sega.defaults.EMBEDDED_EDIT`, for 25 steps),
    the parameters the embedded model's quality table uses.
    """

    seeds: int = 250  # N seeds of the neutral prompt
    first_seed: int = 0  # seeds are first_seed .. first_seed + N - 1
    prompt: str = "a face of a person"
    steps: int = 25  # sampler steps (DDIM on the U-Net model, Euler on flow models)
    guidance: float = 7.5  # classifier-free guidance scale
    batch: int = 16  # images per pipeline call
    scale: float = EMBEDDED_EDIT.scale  # SEGA edit scale s_e of every edit
    threshold: float = EMBEDDED_EDIT.threshold  # lambda: the quantile of |psi| below which guidance is dropped
    warmup: int = EMBEDDED_EDIT.warmup  # first denoising step at which an edit acts
    target_scales: tuple[tuple[str, float], ...] = ()  # per-target scale overrides, e.g. (("bald", 9.0),)
    sweep: tuple[float, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 8, 10)  # monotonicity scales (0 = the plain image)
    sweep_seeds: int = 20  # seeds per target in the sweep
    unique_seeds: int = 50  # seeds of the uniqueness test (the first of the N)
    unique_prompts: tuple[str, ...] = UNIQUE_PROMPTS
    figure_seeds: int = 2  # seeds per combination in the successive-combination figure
    grid_concepts: tuple[str, str] = ("glasses", "smile")  # the two-concept grid
    grid_strengths: tuple[float, ...] = (0, 3, 5, 7)
    edit_refresh: int = 1  # concept refresh every K steps (1: exact SEGA; segakit.sega.guidance.ConceptRefresh)
    guidance_refresh: int = 1  # the unconditional estimate every K steps (1: classifier-free guidance every step)

    def check(self) -> StudyConfig:
        """Raise :class:`UserError` naming the first bad value; return self."""
        for name, value in (("seeds", self.seeds), ("steps", self.steps), ("batch", self.batch),
                            ("sweep seeds", self.sweep_seeds), ("unique seeds", self.unique_seeds),
                            ("figure seeds", self.figure_seeds)):  # fmt: skip
            if int(value) != value or value < 1:
                raise UserError(f"The number of {name} is {value!r}; use a whole number of 1 or more.")
        if self.warmup < 0 or self.warmup >= self.steps:
            raise UserError(
                f"Warm-up {self.warmup} is outside 0..{self.steps - 1}; an edit must start before the last of {self.steps} steps."
            )
        for name, value in (("edit scale", self.scale), ("guidance", self.guidance)):
            if not math.isfinite(value) or value <= 0:
                raise UserError(f"The {name} {value!r} is not a positive number.")
        if int(self.edit_refresh) != self.edit_refresh or self.edit_refresh < 1:
            raise UserError(
                f"--edit-refresh {self.edit_refresh!r} is not a whole number of 1 or more (1 is exact SEGA)."
            )
        if int(self.guidance_refresh) != self.guidance_refresh or self.guidance_refresh < 1:
            raise UserError(
                f"--guidance-refresh {self.guidance_refresh!r} is not a whole number of 1 or more (1 is exact guidance)."
            )
        if not 0 <= self.threshold < 1:
            raise UserError(f"Threshold {self.threshold!r} is outside [0, 1).")
        if (
            len(set(self.sweep)) < 3
            or min(self.sweep) < 0
            or 0 not in self.sweep
            or list(self.sweep) != sorted(self.sweep)
        ):
            raise UserError(
                f"Sweep {list(self.sweep)} must be at least 3 distinct increasing scales from 0 (0 is the plain image)."
            )
        if not self.unique_prompts:
            raise UserError("The uniqueness test needs at least one other prompt.")
        for name, scale in self.target_scales:
            by_name(name)
            if not math.isfinite(scale) or scale <= 0:
                raise UserError(f"The scale {scale!r} for {name!r} is not a positive number.")
        for name in self.grid_concepts:
            by_name(name)
        if len(self.grid_strengths) < 2 or min(self.grid_strengths) < 0:
            raise UserError(f"Grid strengths {list(self.grid_strengths)} must be at least 2 scales of 0 or more.")
        return self

    def seed_list(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))

    def scale_for(self, t: Target) -> float:
        return dict(self.target_scales).get(t.name, self.scale)

    def edit(self, t: Target, scale: float | None = None) -> Edit:
        return Edit(prompt=t.prompt, scale=self.scale_for(t) if scale is None else scale, threshold=self.threshold,
                    warmup=self.warmup, reverse=t.remove)  # fmt: skip


class StudyProgress:
    """What the study tells a progress display (here: nothing). Counts are images."""

    def total(self, images: int) -> None: ...

    def unit(self, name: str) -> None: ...

    def advance(self, images: int) -> None: ...
