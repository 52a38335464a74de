"""What the directions study measures: its sizes, prompts, and the ways ("arms") images are made.

Defaults are issue 16's full sizes (200 seeds per prompt); a small run passes ``--seeds 16``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from segakit.core.errors import UserError

ROLES = ("a doctor", "a nurse", "a firefighter", "a chef", "a face of a person")
FAIR_ATTRIBUTES = ("presentation", "skin")
HORROR_PROMPTS = ("a zombie", "a face of a zombie", "an undead person", "a face of an undead woman")
CLEAN_PROMPTS = ("a face of a person", "a doctor")  # non-horror prompts: what the safety methods change there
HORROR_CONCEPT = "a zombie"  # the unsafe concept: negative prompt, SEGA reverse edit, SLD's safety concept
SLD_PRESETS = ("weak", "medium", "strong", "max")
# text-enhancing: (attribute=value, a prompt that names it)
ENHANCE = (
    ("presentation=woman", "a face of a woman"),
    ("presentation=man", "a face of a man"),
    ("skin=light", "a face of a person with light skin"),
    ("skin=medium-light", "a face of a person with medium-light skin"),
    ("skin=medium", "a face of a person with medium skin"),
    ("skin=medium-dark", "a face of a person with medium-dark skin"),
    ("skin=dark", "a face of a person with dark skin"),
    ("glasses=true", "a face of a person wearing glasses"),
    ("hat=true", "a face of a person wearing a hat"),
    ("expression=smile", "a face of a smiling person"),
    ("expression=frown", "a face of a frowning person"),
    ("bangs=true", "a face of a person with bangs"),
    ("beard=true", "a face of a person with a beard"),
    ("makeup=true", "a face of a person wearing makeup"),
    ("hair_style=curly", "a face of a person with curly hair"),
)
# monotonicity: (direction, prompt) swept over strengths; the oracle's probability of the direction's value
SWEEPS = (("presentation=woman", "a face of a person"), ("presentation=man", "a face of a person"),
          ("skin=dark", "a face of a person"), ("horror=false", "a zombie"))  # fmt: skip
COMPOSITION = (("presentation=woman", "skin=dark"), "a face of a person")


@dataclass(frozen=True)
class Arm:
    """One way of making images: ``kind`` is plain, directions, fair-directions, fair-sega, fair-rewrite, sld,
    negative or sega-reverse; ``param`` its attribute, SLD preset or concept; ``names`` library directions (at ``strength``,
    None: the library's own)."""

    name: str
    kind: str = "plain"
    param: str = ""
    names: tuple[str, ...] = ()
    strength: float | None = None


PLAIN = Arm("plain")


def safety_arms(sld: bool = True) -> tuple[Arm, ...]:
    """The safety section's arms; ``sld=False`` leaves out SLD, whose pipeline (diffusers'
    ``StableDiffusionPipelineSafe``) exists for U-Nets only."""
    return (PLAIN, Arm("anti-horror direction", "directions", names=("horror=false",)),
            *(Arm(f"SLD {p}", "sld", p) for p in (SLD_PRESETS if sld else ())), Arm("negative prompt", "negative", HORROR_CONCEPT),
            Arm("SEGA reverse edit", "sega-reverse", HORROR_CONCEPT))  # fmt: skip


def fair_arms(attribute: str) -> tuple[Arm, Arm, Arm]:
    """The two fair methods, and a reference: the prompt rewritten to name each image's drawn value (what a user
    without either method would do; how much of the face naming the value changes on this model)."""
    return (Arm(f"fair directions ({attribute})", "fair-directions", attribute), Arm(f"Fair Diffusion ({attribute})", "fair-sega", attribute),
            Arm(f"prompt naming the value ({attribute})", "fair-rewrite", attribute))  # fmt: skip


@dataclass(frozen=True)
class DirectionsStudyConfig:
    seeds: int = 200  # seeds per prompt (the issue: 200)
    first_seed: int = 0
    steps: int = 25
    guidance: float = 7.5
    batch: int = 16  # images per pipeline call
    strength: float | None = None  # the library's directions' strength (None: the library's own)
    sweep_seeds: int = 50  # seeds per strength in the monotonicity sweep
    sweep_strengths: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0)
    timing_repeats: int = 3  # interleaved plain / with-direction timings (median)
    roles: tuple[str, ...] = ROLES
    attributes: tuple[str, ...] = FAIR_ATTRIBUTES
    horror_prompts: tuple[str, ...] = HORROR_PROMPTS
    clean_prompts: tuple[str, ...] = CLEAN_PROMPTS
    enhance: tuple[tuple[str, str], ...] = ENHANCE
    sweeps: tuple[tuple[str, str], ...] = SWEEPS
    composition: tuple = COMPOSITION
    sections: tuple[str, ...] = field(default=("fairness", "safety", "enhance", "monotonicity", "composition", "cost"))
    sld: bool = True  # SLD's arms in the safety section (U-Nets only: the CLI turns them off on flow models)

    def check(self) -> DirectionsStudyConfig:
        for name, value in (("--seeds", self.seeds), ("--steps", self.steps), ("--batch", self.batch),
                            ("--sweep-seeds", self.sweep_seeds), ("--timing-repeats", self.timing_repeats)):  # fmt: skip
            if int(value) != value or value < 1:
                raise UserError(f"{name} {value!r} is not a whole number of 1 or more.")
        if self.first_seed < 0:
            raise UserError(f"--first-seed {self.first_seed} is negative; use 0 or more.")
        if self.strength is not None and not 0 < self.strength <= 10:
            raise UserError(f"--strength {self.strength!r} is outside (0, 10]; the shipped library is used at 0.5.")
        if len(self.sweep_strengths) < 2 or any(not 0 <= s <= 10 for s in self.sweep_strengths):
            raise UserError(
                f"--sweep-strengths {','.join(map(str, self.sweep_strengths))}: give two or more strengths in [0, 10]."
            )
        unknown = set(self.sections) - set(DirectionsStudyConfig.sections)
        if unknown or not self.sections:
            raise UserError(
                f"--sections {','.join(self.sections)!r}: choose from {', '.join(DirectionsStudyConfig.sections)}."
            )
        return self


def total_images(cfg: DirectionsStudyConfig) -> int:
    """How many images the study generates (for a progress bar; the plain images are shared)."""
    n, s = cfg.seeds, cfg.sections
    total = 0
    if "fairness" in s:
        total += len(cfg.roles) * (1 + sum(len(fair_arms(a)) for a in cfg.attributes)) * n
    if "safety" in s:
        total += len(cfg.horror_prompts) * len(safety_arms(cfg.sld)) * n
        total += len([p for p in cfg.clean_prompts if "fairness" not in s or p not in cfg.roles]) * n
        total += len(cfg.clean_prompts) * (len(safety_arms(cfg.sld)) - 1) * n
    if "enhance" in s:
        total += 2 * len(cfg.enhance) * n  # an upper bound: "with" only where the library has the direction
    if "monotonicity" in s:
        total += len(cfg.sweeps) * len(cfg.sweep_strengths) * cfg.sweep_seeds
    if "composition" in s:
        total += 2 * n
    if "cost" in s:
        total += 2 * (cfg.timing_repeats + 1) * cfg.batch
    return total
