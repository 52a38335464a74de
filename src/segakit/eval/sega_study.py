"""SEGA's face-attribute study (the paper's Tables 1-2 and Figures 1, 5, 10) on the faces world, with a baseline.

    segakit eval sega --out docs/results/sega          # N = 250 seeds; see docs/sega-study.md

The paper asked people to judge 250 generated faces; here the faces world's oracle judges them, which also
turns what the paper showed only in pictures into numbers. For N seeds of a neutral prompt:

- additions of ten attributes (gender both ways, glasses, smile, bald, beard, hat, curls, makeup, gray hair,
  bangs), each on the seeds whose plain image lacks it; removals (no glasses, no smile, no beard) on the seeds
  that have it; two combinations of four edits (Table 2: at least 1, 2, 3, all 4 succeed);
- isolation: the share of the attributes an edit did not target that the oracle still reads the same;
- composition preservation: SSIM and RMSE to the unedited image of the same seed, and the cosine similarity
  of the oracle's features;
- monotonicity: Spearman correlation between edit scale and the oracle's probability of the edit's goal over
  a sweep of scales;
- uniqueness: a glasses guidance recorded on the neutral prompt, re-applied to five other prompts with the same
  seeds (``sem_guidance=``);
- the baseline: the same attributes asked for by rewriting the prompt, scored the same way.

Resumable: every unit of work (one edit on its seeds, one sweep, one figure) is cached under ``DIR/cache/`` in
a file named by a hash of everything it depends on (model and oracle weights, prompt, seeds, steps, edit
parameters, batch), written atomically; a rerun skips what is done. Deterministic: one generator per seed, and
all measurements are taken on the 8-bit images that the figures show, so a resumed run reports exactly what an
uninterrupted one does.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from segakit.errors import UserError
from segakit.eval.embedded_quality import sample_images
from segakit.eval.isolation import isolation
from segakit.eval.ssim import ssim
from segakit.eval.targets import COMBINATIONS, GLASSES, REMOVALS, STUDY_ADDITIONS, Target, by_name
from segakit.guidance import Edit
from segakit.models import EMBEDDED_EDIT
from segakit.world.schema import ATTRIBUTES

CACHE_VERSION = 1
COMPUTE_KEY = "_compute_s"  # extra array in each cache file: the seconds its unit took to compute
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

    Edit defaults: the embedded model's (:data:`segakit.models.EMBEDDED_EDIT`, for 25 steps),
    the parameters the embedded model's quality table uses.
    """

    seeds: int = 250  # N seeds of the neutral prompt
    first_seed: int = 0  # seeds are first_seed .. first_seed + N - 1
    prompt: str = "a face of a person"
    steps: int = 25  # DDIM steps
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

    def check(self) -> StudyConfig:
        """Raise :class:`UserError` naming the first bad value; return self."""
        for name, value in (("seeds", self.seeds), ("steps", self.steps), ("batch", self.batch),
                            ("sweep seeds", self.sweep_seeds), ("unique seeds", self.unique_seeds),
                            ("figure seeds", self.figure_seeds)):  # fmt: skip
            if int(value) != value or value < 1:
                raise UserError(f"The number of {name} is {value!r}; use a whole number of 1 or more.")
        if self.warmup < 0 or self.warmup >= self.steps:
            raise UserError(f"Warm-up {self.warmup} is outside 0..{self.steps - 1}; an edit must start before the last of {self.steps} steps.")
        for name, value in (("edit scale", self.scale), ("guidance", self.guidance)):
            if not math.isfinite(value) or value <= 0:
                raise UserError(f"The {name} {value!r} is not a positive number.")
        if not 0 <= self.threshold < 1:
            raise UserError(f"Threshold {self.threshold!r} is outside [0, 1).")
        if len(set(self.sweep)) < 3 or min(self.sweep) < 0 or 0 not in self.sweep or list(self.sweep) != sorted(self.sweep):
            raise UserError(f"Sweep {list(self.sweep)} must be at least 3 distinct increasing scales from 0 (0 is the plain image).")
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


# ------------------------------------------------------------------------------------------ measures
def quantize(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] -> uint8, as a PNG stores it. All measures are taken on these."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


def to_float(u8: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(u8)).float() / 255.0


COMPOSITION = ("ssim", "rmse", "cosine")  # the measures of composition preservation


def composition(edited: np.ndarray, plain: np.ndarray, f_edited: np.ndarray, f_plain: np.ndarray) -> dict[str, np.ndarray]:
    """Per pair: SSIM and RMSE (pixels in [0, 1]) to the unedited image, cosine similarity of oracle features."""
    if len(edited) == 0:
        return {k: np.zeros(0, np.float32) for k in COMPOSITION}
    x, y = to_float(edited), to_float(plain)
    fe, fp = torch.as_tensor(f_edited).double(), torch.as_tensor(f_plain).double()
    return {
        "ssim": ssim(x, y).numpy().astype(np.float32),
        "rmse": ((x - y) ** 2).mean(dim=(1, 2, 3)).sqrt().numpy().astype(np.float32),
        "cosine": torch.nn.functional.cosine_similarity(fe, fp, dim=1, eps=1e-12).numpy().astype(np.float32),
    }


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95% by default) of a rate of k in n."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def rate(flags: Sequence[bool] | np.ndarray) -> dict:
    """Share of true flags with its 95% Wilson interval."""
    flags = np.asarray(flags, dtype=bool)
    n, k = int(flags.size), int(flags.sum())
    return {"k": k, "n": n, "rate": k / n if n else float("nan"), "ci95": list(wilson(k, n))}


def monotonicity(scales: Sequence[float], p: np.ndarray, flat: float = 1e-4) -> dict:
    """Spearman correlation between edit scale and the probability of the edit's goal, per seed.

    ``p`` is (seeds, scales). A seed whose probability moves by less than ``flat`` over the sweep (a saturated
    or untouched image: only float noise would be ranked) has no correlation (``undefined``);
    ``spearman_mean``/``median`` and ``share_increasing`` (rho > 0) are over the seeds that have one, and
    ``spearman_of_mean`` is the correlation of the mean curve.
    """
    from scipy.stats import spearmanr

    p = np.asarray(p, dtype=np.float64).reshape(-1, len(scales))
    x = np.asarray(scales, dtype=np.float64)

    def rho(y: np.ndarray) -> float:
        if np.ptp(y) < flat:
            return float("nan")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(spearmanr(x, y)[0])

    rhos = np.array([rho(row) for row in p])
    ok = rhos[~np.isnan(rhos)]
    mean_curve = p.mean(0) if len(p) else np.full(len(scales), np.nan)
    return {
        "seeds": int(len(p)),
        "scales": [float(s) for s in scales],
        "mean_probability": [float(v) for v in mean_curve],
        "spearman_mean": float(ok.mean()) if ok.size else float("nan"),
        "spearman_median": float(np.median(ok)) if ok.size else float("nan"),
        "share_increasing": float((ok > 0).mean()) if ok.size else float("nan"),
        "undefined": int(np.isnan(rhos).sum()),
        "spearman_of_mean": rho(mean_curve) if len(p) else float("nan"),
    }


def at_least(successes: np.ndarray) -> dict[str, float]:
    """Table 2: share of seeds with at least k of m edits successful, k = 1..m. ``successes`` is (seeds, m)."""
    s = np.asarray(successes, dtype=bool)
    count = s.sum(1)
    return {str(k): float((count >= k).mean()) if len(s) else float("nan") for k in range(1, s.shape[1] + 1)}


# ------------------------------------------------------------------------------------- labels, probs
ATTRS = list(ATTRIBUTES)
COLUMNS = [(a, v) for a in ATTRS for v in ATTRIBUTES[a]]


def encode(labels: Sequence[dict]) -> np.ndarray:
    return np.array([[ATTRIBUTES[a].index(lab[a]) for a in ATTRS] for lab in labels], dtype=np.int8).reshape(-1, len(ATTRS))


def decode(codes: np.ndarray) -> list[dict]:
    return [{a: ATTRIBUTES[a][int(c)] for a, c in zip(ATTRS, row)} for row in np.asarray(codes)]


def goal_probability(t: Target, probs: np.ndarray) -> np.ndarray:
    """The oracle's probability of the edit's goal per image, from (N, V) probabilities in :data:`COLUMNS` order.

    P(attribute = value), times P(not bald) for a hair colour (no hair colour on a bald head), and one minus
    that for a removal."""
    col = {c: i for i, c in enumerate(COLUMNS)}
    p = probs[:, col[(t.attribute, t.value)]].astype(np.float64)
    if t.attribute == "hair_color":
        p = p * (1 - probs[:, col[("hair_style", "bald")]])
    return 1 - p if t.remove else p


# ------------------------------------------------------------------------------------------ the cache
def fingerprint(*modules, extra: object = None) -> str:
    """A hash of the modules' weights (and of ``extra``, JSON-able): it changes when a model is retrained."""
    h = hashlib.sha256()
    for m in modules:
        if m is None:
            continue
        for name, t in sorted(m.state_dict().items()):
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    if extra is not None:
        h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def pipeline_fingerprint(pipe) -> str:
    tok = getattr(pipe, "tokenizer", None)
    extra = {"scheduler": dict(pipe.scheduler.config), "vocab": sorted(tok.get_vocab().items()) if tok is not None else None}
    return fingerprint(pipe.unet, pipe.vae, pipe.text_encoder, getattr(pipe, "text_encoder_2", None), extra=extra)


@dataclass
class Unit:
    """One cacheable piece of work: ``compute`` returns arrays; ``spec`` is everything they depend on."""

    name: str
    images: int
    spec: dict
    compute: Callable[[], dict[str, np.ndarray]]


class Cache:
    """``folder/<unit name>-<hash of its spec>.npz``, written atomically."""

    def __init__(self, folder: Path) -> None:
        from segakit.atomic import atomic_open, ensure_writable_dir

        self.folder = ensure_writable_dir(Path(folder))
        ignore = self.folder / ".gitignore"
        if not ignore.exists():
            with atomic_open(ignore, "w") as fh:
                fh.write("# segakit eval sega cache: regenerable, not for version control\n*\n")

    def path(self, unit: Unit) -> Path:
        key = hashlib.sha256(json.dumps({"v": CACHE_VERSION, **unit.spec}, sort_keys=True, default=str).encode()).hexdigest()[:16]
        slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in unit.name)
        return self.folder / f"{slug}-{key}.npz"

    def load(self, unit: Unit) -> dict[str, np.ndarray] | None:
        path = self.path(unit)
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}

    def save(self, unit: Unit, arrays: dict[str, np.ndarray]) -> None:
        from segakit.atomic import atomic_open

        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        with atomic_open(self.path(unit), "wb") as fh:
            fh.write(buffer.getvalue())


# ------------------------------------------------------------------------------------------ the study
class Study:
    """Runs the study's units (cached), then summarises them into the report and draws the figures."""

    def __init__(self, pipe, oracle, cfg: StudyConfig, cache_dir: Path, progress: StudyProgress | None = None,
                 model_name: str = "") -> None:  # fmt: skip
        self.pipe, self.oracle, self.cfg = pipe, oracle, cfg.check()
        self.cache = Cache(cache_dir)
        self.progress = progress or StudyProgress()
        self.model_name = model_name
        self.common = {
            "model": pipeline_fingerprint(pipe),
            "oracle": fingerprint(oracle.net),
            "steps": cfg.steps,
            "guidance": cfg.guidance,
            "batch": cfg.batch,
        }
        self.seeds = cfg.seed_list()
        self.cached = 0
        self.units = 0
        self.compute_s = 0.0  # seconds the units took when they were computed (cached or not)
        self.unrecorded = 0  # units whose cache file predates the recorded compute time

    # ---- generation and reading
    def _generate(self, prompt: str, seeds: Sequence[int], edits: Sequence[Edit] = ()) -> np.ndarray:
        if not len(seeds):
            return np.zeros((0, 3, 64, 64), np.uint8)
        images = sample_images(self.pipe, prompt, list(seeds), self.cfg.steps, self.cfg.guidance, self.cfg.batch,
                               list(edits), self.progress.advance)  # fmt: skip
        return quantize(images).numpy()

    def _chunks(self, prompt: str, seeds: Sequence[int], edits: Sequence[Edit] = (), record: bool = False,
                reuse: torch.Tensor | None = None) -> tuple[np.ndarray, torch.Tensor | None]:  # fmt: skip
        """Like :func:`sample_images`, recording the semantic guidance or re-applying a recorded one."""
        from segakit.world.oracle import to_tensor

        images, recorded = [], []
        for start in range(0, len(seeds), self.cfg.batch):
            chunk = list(seeds[start : start + self.cfg.batch])
            out = self.pipe(
                prompt, num_inference_steps=self.cfg.steps, guidance_scale=self.cfg.guidance, num_images_per_prompt=len(chunk),
                generator=[torch.Generator().manual_seed(int(s)) for s in chunk], edits=list(edits), output_type="pt",
                record_guidance=record, record_device="cpu",
                sem_guidance=None if reuse is None else reuse[:, start : start + len(chunk)],
            )  # fmt: skip
            images.append(quantize(to_tensor(out.images.float().cpu())))
            if record:
                recorded.append(out.guidance.guidance.float().cpu())
            self.progress.advance(len(chunk))
        return torch.cat(images).numpy(), (torch.cat(recorded, dim=1) if record else None)

    def _read(self, u8: np.ndarray) -> dict[str, np.ndarray]:
        """Oracle labels (codes), probabilities (COLUMNS order) and features of uint8 images."""
        from segakit.world.oracle import decode as decode_probs

        if len(u8) == 0:
            return {"labels": np.zeros((0, len(ATTRS)), np.int8), "probs": np.zeros((0, len(COLUMNS)), np.float32),
                    "features": np.zeros((0, 0), np.float32)}  # fmt: skip
        x = to_float(u8)
        probs = self.oracle.probabilities(x)
        return {
            "labels": encode(decode_probs(probs)),
            "probs": torch.cat([probs[a] for a in ATTRS], dim=1).numpy().astype(np.float32),
            "features": self.oracle.features(x).numpy().astype(np.float32),
        }

    def _run(self, unit: Unit) -> dict[str, np.ndarray]:
        self.units += 1
        self.progress.unit(unit.name)
        data = self.cache.load(unit)
        if data is not None:
            self.cached += 1
            self.progress.advance(unit.images)
        else:
            start = time.perf_counter()
            data = unit.compute()
            data[COMPUTE_KEY] = np.array(time.perf_counter() - start, np.float64)
            self.cache.save(unit, data)
        # a unit's own compute time travels in its cache file, so a report rewritten from the cache still states
        # what the study cost (files written before this was recorded have none: counted as unrecorded)
        seconds = data.pop(COMPUTE_KEY, None)
        if seconds is None:
            self.unrecorded += 1
        else:
            self.compute_s += float(seconds)
        return data

    # ---- units
    def _spec(self, kind: str, **kw) -> dict:
        return {"kind": kind, **self.common, **kw}

    def _plain_unit(self) -> Unit:
        def compute():
            u8 = self._generate(self.cfg.prompt, self.seeds)
            return {"images": u8, **self._read(u8)}

        return Unit("plain", len(self.seeds), self._spec("plain", prompt=self.cfg.prompt, seeds=self.seeds), compute)

    def _edit_unit(self, name: str, idx: Sequence[int], prompt: str, edits: Sequence[Edit]) -> Unit:
        idx = [int(i) for i in idx]
        seeds = [self.seeds[i] for i in idx]

        def compute():
            u8 = self._generate(prompt, seeds, edits)
            read = self._read(u8)
            comp = composition(u8, self.plain["images"][idx], read["features"], self.plain["features"][idx])
            return {"idx": np.array(idx, np.int64), "labels": read["labels"], "probs": read["probs"], **comp}

        spec = self._spec("edit", prompt=prompt, seeds=seeds, edits=[asdict(e) for e in edits])
        return Unit(name, len(seeds), spec, compute)

    def _sweep_unit(self, t: Target, idx: Sequence[int]) -> Unit:
        idx = [int(i) for i in idx][: self.cfg.sweep_seeds]
        seeds = [self.seeds[i] for i in idx]
        scales = list(self.cfg.sweep)

        def compute():
            p = np.zeros((len(idx), len(scales)), np.float32)
            strip = np.zeros((len(scales) if idx else 0, 3, 64, 64), np.uint8)
            for j, s in enumerate(scales):
                if s == 0:
                    u8, probs = self.plain["images"][idx], self.plain["probs"][idx]
                else:
                    u8 = self._generate(self.cfg.prompt, seeds, [self.cfg.edit(t, scale=s)])
                    probs = self._read(u8)["probs"]
                if idx:
                    p[:, j] = goal_probability(t, probs)
                    strip[j] = u8[0]
            return {"idx": np.array(idx, np.int64), "p": p, "strip": strip}

        spec = self._spec("sweep", prompt=self.cfg.prompt, seeds=seeds, edits=[asdict(self.cfg.edit(t, scale=s)) for s in scales if s])
        return Unit(f"sweep-{t.name}", len(seeds) * sum(1 for s in scales if s), spec, compute)

    def _record_unit(self) -> Unit:
        seeds = self.seeds[: self.cfg.unique_seeds]
        edit = self.cfg.edit(GLASSES)

        def compute():
            u8, guidance = self._chunks(self.cfg.prompt, seeds, [edit], record=True)
            return {"labels": self._read(u8)["labels"], "guidance": guidance.numpy()}

        return Unit("unique-record", len(seeds), self._spec("record", prompt=self.cfg.prompt, seeds=seeds, edits=[asdict(edit)]), compute)

    def _unique_unit(self, j: int, prompt: str, record: Unit) -> Unit:
        seeds = self.seeds[: self.cfg.unique_seeds]
        edit = self.cfg.edit(GLASSES)

        def compute():
            plain = self._generate(prompt, seeds)
            guidance = torch.from_numpy(self.data[record.name]["guidance"])
            reapplied, _ = self._chunks(prompt, seeds, reuse=guidance)
            direct = self._generate(prompt, seeds, [edit])
            r_plain, r_re = self._read(plain), self._read(reapplied)
            comp = composition(reapplied, plain, r_re["features"], r_plain["features"])
            return {"plain": r_plain["labels"], "reapplied": r_re["labels"], "direct": self._read(direct)["labels"],
                    "ssim": comp["ssim"]}  # fmt: skip

        spec = self._spec("unique", prompt=prompt, seeds=seeds, edits=[asdict(edit)], record=self.cache.path(record).name)
        return Unit(f"unique-{j}", 3 * len(seeds), spec, compute)

    def _combination_figure_unit(self) -> Unit:
        seeds = self.seeds[: self.cfg.figure_seeds]
        calls = [[self.cfg.edit(t) for t in combo[:k]] for combo in COMBINATIONS for k in range(1, len(combo) + 1)]

        def compute():
            shape = (len(COMBINATIONS), len(COMBINATIONS[0]))
            images = np.stack([self._generate(self.cfg.prompt, seeds, edits) for edits in calls])
            return {"images": images.reshape(*shape, *images.shape[1:])}

        spec = self._spec("figure-combination", prompt=self.cfg.prompt, seeds=seeds, calls=[[asdict(e) for e in c] for c in calls])
        return Unit("figure-combination", len(calls) * len(seeds), spec, compute)

    def _grid_figure_unit(self) -> Unit:
        a, b = (by_name(n) for n in self.cfg.grid_concepts)
        strengths = list(self.cfg.grid_strengths)
        seed = self.seeds[0]

        def edits(sa: float, sb: float) -> list[Edit]:
            return [self.cfg.edit(t, scale=s) for t, s in ((a, sa), (b, sb)) if s > 0]

        def compute():
            images = np.zeros((len(strengths), len(strengths), 3, 64, 64), np.uint8)
            for i, sb in enumerate(strengths):
                for j, sa in enumerate(strengths):
                    e = edits(sa, sb)
                    images[i, j] = self._generate(self.cfg.prompt, [seed], e)[0] if e else self.plain["images"][0]
            return {"images": images}

        calls = [[asdict(e) for e in edits(sa, sb)] for sb in strengths for sa in strengths]
        n = sum(1 for c in calls if c)
        return Unit("figure-grid", n, self._spec("figure-grid", prompt=self.cfg.prompt, seed=seed, calls=calls), compute)

    # ---- the run
    def plan(self) -> list[Unit]:
        """The units after the plain images: which seeds each edit is scored on follows from their labels."""
        cfg, labels = self.cfg, decode(self.plain["labels"])
        # the seeds each edit is scored on: an addition where the plain image lacks it, a removal where it has it
        needs = {t.name: [i for i, lab in enumerate(labels) if not t.achieved(lab)] for t in (*STUDY_ADDITIONS, *REMOVALS)}
        units = []
        for t in STUDY_ADDITIONS:
            units.append(self._edit_unit(f"add-{t.name}", needs[t.name], cfg.prompt, [cfg.edit(t)]))
            units.append(self._edit_unit(f"rewrite-{t.name}", needs[t.name], t.rewrite(cfg.prompt), []))
        for t in REMOVALS:
            units.append(self._edit_unit(f"remove-{t.name}", needs[t.name], cfg.prompt, [cfg.edit(t)]))
        for k, combo in enumerate(COMBINATIONS):
            units.append(self._edit_unit(f"combination-{k + 1}", range(len(labels)), cfg.prompt, [cfg.edit(t) for t in combo]))
        for t in (*STUDY_ADDITIONS, *REMOVALS):
            units.append(self._sweep_unit(t, needs[t.name]))
        record = self._record_unit()
        units.append(record)
        units += [self._unique_unit(j, p, record) for j, p in enumerate(cfg.unique_prompts)]
        units += [self._combination_figure_unit(), self._grid_figure_unit()]
        return units

    def run(self) -> dict:
        """Run (or load) every unit; return the report (figures are drawn by :func:`write_report`)."""
        start = time.perf_counter()
        plain_unit = self._plain_unit()
        self.progress.total(plain_unit.images)
        self.plain = self._run(plain_unit)
        units = self.plan()
        self.progress.total(plain_unit.images + sum(u.images for u in units))
        self.data = {}
        for u in units:
            self.data[u.name] = self._run(u)
        report = _json_ready(summarize(self.cfg, self.plain, self.data))  # NaN (no seeds) -> None, as in report.json
        report["model"] = {"name": self.model_name, "fingerprint": self.common["model"], "oracle": self.common["oracle"]}
        report["run"] = {"wall_s": round(time.perf_counter() - start, 1), "units": self.units, "units_from_cache": self.cached,
                         "images": plain_unit.images + sum(u.images for u in units),
                         "compute_s": round(self.compute_s, 1), "units_without_compute_time": self.unrecorded}  # fmt: skip
        return report


# ------------------------------------------------------------------------------------------ summary
def _scored(data: dict, plain_labels: list[dict], targets: Sequence[Target]) -> dict:
    """Success, isolation and composition of one edit unit (several units concatenated)."""
    idx = data["idx"]
    edited = decode(data["labels"])
    before = [plain_labels[i] for i in idx]
    achieved = np.array([[t.achieved(lab) for t in targets] for lab in edited], dtype=bool).reshape(-1, len(targets))
    return {
        "success": rate(achieved.all(1)),
        "isolation": isolation(before, edited, targets),
        "composition": {k: float(np.mean(data[k])) if len(data[k]) else float("nan") for k in COMPOSITION},
    }


def both_succeeded(sega: dict, rewrite: dict, target: Target) -> dict:
    """Composition of SEGA and of the prompt rewrite on the seeds where both reach ``target``.

    The fair test of the paper's claim: an edit that fails and changes nothing preserves the composition
    trivially, so the all-seeds means favour whichever method fails more. Both units hold the same seeds.
    Returns ``seeds`` (how many) and, per side, the mean of each measure (NaN on no seeds).
    """
    if not np.array_equal(sega["idx"], rewrite["idx"]):
        raise ValueError("SEGA and rewrite units must hold the same seeds in the same order.")
    ok = np.array([target.achieved(a) and target.achieved(b) for a, b in zip(decode(sega["labels"]), decode(rewrite["labels"]))], dtype=bool)
    return {"seeds": int(ok.sum()),
            **{side: {k: float(np.mean(d[k][ok])) if ok.any() else float("nan") for k in COMPOSITION}
               for side, d in (("sega", sega), ("baseline", rewrite))}}  # fmt: skip


def _concat(*units: dict) -> dict:
    return {k: np.concatenate([u[k] for u in units]) for k in ("idx", "labels", *COMPOSITION)}


def _mean(values: Sequence[float]) -> float:
    ok = [v for v in values if not math.isnan(v)]
    return float(np.mean(ok)) if ok else float("nan")


def summarize(cfg: StudyConfig, plain: dict, data: dict) -> dict:
    """The report's numbers from the units' arrays (pure bookkeeping, no model)."""
    labels = decode(plain["labels"])
    n = len(labels)
    results: dict = {"plain": {"seeds": n, "attributes": {
        a: {str(v).lower() if isinstance(v, bool) else v: float(np.mean([lab[a] == v for lab in labels])) for v in ATTRIBUTES[a]}
        for a in ATTRS}}}  # fmt: skip

    adds: dict = {}
    for t in STUDY_ADDITIONS:
        sega, rew = data[f"add-{t.name}"], data[f"rewrite-{t.name}"]
        adds[t.name] = {"seeds": int(len(sega["idx"])), "edit": asdict(cfg.edit(t)), "rewrite": t.rewrite(cfg.prompt),
                        "sega": _scored(sega, labels, [t]), "baseline": _scored(rew, labels, [t]),
                        "both_succeeded": both_succeeded(sega, rew, t)}  # fmt: skip
    woman, man = STUDY_ADDITIONS[0], STUDY_ADDITIONS[1]
    gender = {"seeds": adds[woman.name]["seeds"] + adds[man.name]["seeds"]}
    for side, prefix in (("sega", "add"), ("baseline", "rewrite")):
        both = _concat(data[f"{prefix}-{woman.name}"], data[f"{prefix}-{man.name}"])
        edited = decode(both["labels"])
        ok = [woman.achieved(e) if labels[i]["presentation"] == "man" else man.achieved(e) for i, e in zip(both["idx"], edited)]
        scored = _scored(both, labels, [woman])
        scored["success"] = rate(ok)
        gender[side] = scored
    ten = {"gender": gender, **{k: v for k, v in adds.items() if k not in (woman.name, man.name)}}
    results["additions"] = adds
    results["additions_by_attribute"] = ten
    results["additions_mean"] = {
        side: {
            "success": _mean([r[side]["success"]["rate"] for r in ten.values()]),
            "isolation": _mean([r[side]["isolation"]["unchanged"] for r in ten.values()]),
            **{k: _mean([r[side]["composition"][k] for r in ten.values()]) for k in COMPOSITION},
        }
        for side in ("sega", "baseline")
    }
    paired = [a["both_succeeded"] for a in adds.values()]
    pooled = sum(p["seeds"] for p in paired)
    results["additions_both_succeeded"] = {  # seed-weighted over all additions
        "seeds": pooled,
        **{side: {k: float(sum(p["seeds"] * p[side][k] for p in paired if p["seeds"]) / pooled) if pooled else float("nan")
                  for k in COMPOSITION} for side in ("sega", "baseline")},
    }  # fmt: skip
    results["removals"] = {t.name: {"seeds": int(len(data[f"remove-{t.name}"]["idx"])), "edit": asdict(cfg.edit(t)),
                                    "sega": _scored(data[f"remove-{t.name}"], labels, [t])} for t in REMOVALS}  # fmt: skip
    results["removals_mean"] = {"success": _mean([r["sega"]["success"]["rate"] for r in results["removals"].values()])}

    combos = []
    for k, combo in enumerate(COMBINATIONS):
        d = data[f"combination-{k + 1}"]
        edited = decode(d["labels"])
        ok = np.array([[t.achieved(e) for t in combo] for e in edited], dtype=bool).reshape(-1, len(combo))
        per_edit = {}
        for j, t in enumerate(combo):
            lacking = [r for r, i in enumerate(d["idx"]) if not t.achieved(labels[i])]
            per_edit[t.name] = {"all_seeds": rate(ok[:, j]), "seeds_lacking": rate(ok[lacking, j])}
        scored = _scored(d, labels, combo)
        combos.append({"edits": [t.name for t in combo], "seeds": int(len(d["idx"])), "at_least": at_least(ok),
                       "per_edit": per_edit, "isolation": scored["isolation"], "composition": scored["composition"],
                       "paper_all_four": PAPER["all_four"][k]})  # fmt: skip
    results["combinations"] = combos

    results["monotonicity"] = {t.name: monotonicity(cfg.sweep, data[f"sweep-{t.name}"]["p"]) for t in (*STUDY_ADDITIONS, *REMOVALS)}
    mono = results["monotonicity"].values()
    results["monotonicity_mean"] = {k: _mean([m[k] for m in mono]) for k in ("spearman_mean", "share_increasing", "spearman_of_mean")}

    rec = decode(data["unique-record"]["labels"])
    source_lacking = [i for i in range(len(rec)) if not GLASSES.present(labels[i])]
    prompts = {}
    for j, prompt in enumerate(cfg.unique_prompts):
        d = data[f"unique-{j}"]
        plain_p, re_p, direct_p = decode(d["plain"]), decode(d["reapplied"]), decode(d["direct"])
        lack = [i for i, lab in enumerate(plain_p) if not GLASSES.present(lab)]
        prompts[prompt] = {"seeds_lacking": len(lack), "reapplied": rate([GLASSES.present(re_p[i]) for i in lack]),
                           "direct": rate([GLASSES.present(direct_p[i]) for i in lack]),
                           "ssim_reapplied_to_plain": float(np.mean(d["ssim"])) if len(d["ssim"]) else float("nan")}  # fmt: skip
    results["uniqueness"] = {
        "concept": GLASSES.name, "source_prompt": cfg.prompt, "seeds": len(rec),
        "source_success": rate([GLASSES.present(rec[i]) for i in source_lacking]),
        "prompts": prompts,
        "reapplied_mean": _mean([p["reapplied"]["rate"] for p in prompts.values()]),
        "direct_mean": _mean([p["direct"]["rate"] for p in prompts.values()]),
    }  # fmt: skip
    return {"study": "sega", "config": asdict(cfg), "paper": {"additions": PAPER["additions"], "removals": PAPER["removals"],
            "all_four": list(PAPER["all_four"])}, "results": results}  # fmt: skip


# ------------------------------------------------------------------------------------------ report
def _missing(x: float | None) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _pct(x: float | None) -> str:
    return "-" if _missing(x) else f"{100 * x:.1f}%"


def _num(x: float | None, digits: int = 3) -> str:
    return "-" if _missing(x) else f"{x:.{digits}f}"


def _rate(r: dict) -> str:
    lo, hi = r["ci95"]
    return f"{_pct(r['rate'])} ({r['k']}/{r['n']}; {_pct(lo)}-{_pct(hi)})" if r["n"] else "- (0 seeds)"


def _points(ours: float | None, paper: float) -> str:
    return "-" if _missing(ours) else f"{100 * (ours - paper):+.1f} points"


def markdown(report: dict, command: str, figures: Sequence[str]) -> str:
    r, cfg = report["results"], report["config"]
    run = report.get("run", {})
    am, rm = r["additions_mean"], r["removals_mean"]
    lines = [
        "# SEGA face-attribute study", "",
        f"Produced by `{command}` in {run.get('wall_s', 0):.0f} s wall time "
        f"({run.get('units_from_cache', 0)} of {run.get('units', 0)} units from the cache, {run.get('images', 0)} images in all; "
        f"computing the units took {run.get('compute_s', 0):.0f} s when they were made"
        + (f", not counting {run['units_without_compute_time']} units cached before compute times were recorded" if run.get("units_without_compute_time") else "")
        + "). "
        f"Model `{report.get('model', {}).get('name', '')}` (weights {report.get('model', {}).get('fingerprint', '')}), "
        f"oracle weights {report.get('model', {}).get('oracle', '')}. How it is measured: docs/sega-study.md.", "",
        f"{cfg['seeds']} seeds ({cfg['first_seed']}..{cfg['first_seed'] + cfg['seeds'] - 1}) of '{cfg['prompt']}', "
        f"{cfg['steps']} DDIM steps, guidance {cfg['guidance']:g}; every edit: scale {cfg['scale']:g}, threshold "
        f"{cfg['threshold']:g}, warm-up {cfg['warmup']}" + (f", per-target scales {dict(cfg['target_scales'])}" if cfg["target_scales"] else "") + ".",
        "", "## Summary", "",
        "| measure | SEGA | prompt rewrite | paper (SEGA) |", "|---|---|---|---|",
        f"| additions, mean success over 10 attributes | {_pct(am['sega']['success'])} | {_pct(am['baseline']['success'])} | {_pct(report['paper']['additions'])} ({_points(am['sega']['success'], report['paper']['additions'])}) |",
        f"| additions, untargeted attributes unchanged | {_pct(am['sega']['isolation'])} | {_pct(am['baseline']['isolation'])} | |",
        f"| additions, SSIM to the unedited image | {_num(am['sega']['ssim'])} | {_num(am['baseline']['ssim'])} | |",
        f"| additions, RMSE to the unedited image | {_num(am['sega']['rmse'])} | {_num(am['baseline']['rmse'])} | |",
        f"| additions, oracle-feature cosine to the unedited image | {_num(am['sega']['cosine'])} | {_num(am['baseline']['cosine'])} | |",
        f"| additions where both succeeded ({r['additions_both_succeeded']['seeds']} seeds): SSIM to the unedited image | "
        f"{_num(r['additions_both_succeeded']['sega']['ssim'])} | {_num(r['additions_both_succeeded']['baseline']['ssim'])} | |",
        f"| removals, mean success over 3 attributes | {_pct(rm['success'])} | | {_pct(report['paper']['removals'])} ({_points(rm['success'], report['paper']['removals'])}) |",
    ]  # fmt: skip
    for c in r["combinations"]:
        lines.append(f"| all 4 of {' + '.join(c['edits'])} | {_pct(c['at_least']['4'])} | | {_pct(c['paper_all_four'])} "
                     f"({_points(c['at_least']['4'], c['paper_all_four'])}) |")  # fmt: skip
    mm = r["monotonicity_mean"]
    lines += [
        f"| monotonicity: mean Spearman rho (scale vs oracle probability), per seed | {_num(mm['spearman_mean'])} | | shown only in figures |",
        f"| uniqueness: recorded glasses guidance re-applied to {len(r['uniqueness']['prompts'])} other prompts | {_pct(r['uniqueness']['reapplied_mean'])} | | shown only in figures |",
        "", "## Additions (Table 1)", "",
        "Each attribute on the seeds whose plain image lacks it (gender: +woman on the seeds drawn as men, +man on "
        "those drawn as women). Success: the oracle reads the attribute in the edited image (95% Wilson interval). "
        "Isolation: mean share of the untargeted attributes the oracle reads unchanged.", "",
        "| attribute | seeds | SEGA success | rewrite success | SEGA isolation | rewrite isolation |", "|---|---|---|---|---|---|",
    ]  # fmt: skip
    rows = {**{k: v for k, v in r["additions"].items()}, "gender (both)": r["additions_by_attribute"]["gender"]}
    for name, a in rows.items():
        lines.append(f"| {name} | {a['seeds']} | {_rate(a['sega']['success'])} | {_rate(a['baseline']['success'])} | "
                     f"{_pct(a['sega']['isolation']['unchanged'])} | {_pct(a['baseline']['isolation']['unchanged'])} |")  # fmt: skip
    lines += ["", "Composition preservation (to the unedited image of the same seed; SSIM and cosine: higher is closer, RMSE: lower):", "",
              "| attribute | SEGA SSIM | rewrite SSIM | SEGA RMSE | rewrite RMSE | SEGA feature cosine | rewrite feature cosine |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, a in rows.items():
        s, b = a["sega"]["composition"], a["baseline"]["composition"]
        lines.append(f"| {name} | {_num(s['ssim'])} | {_num(b['ssim'])} | {_num(s['rmse'])} | {_num(b['rmse'])} | {_num(s['cosine'])} | {_num(b['cosine'])} |")
    lines += ["", "The same measures on the seeds where both SEGA and the rewrite reached the attribute (an edit that fails and "
              "changes nothing preserves the composition trivially, so this is the fair comparison; 'all' is seed-weighted):", "",
              "| attribute | seeds | SEGA SSIM | rewrite SSIM | SEGA RMSE | rewrite RMSE | SEGA feature cosine | rewrite feature cosine |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, b in [*((k, a["both_succeeded"]) for k, a in r["additions"].items()), ("all", r["additions_both_succeeded"])]:
        s, w = b["sega"], b["baseline"]
        lines.append(f"| {name} | {b['seeds']} | {_num(s['ssim'])} | {_num(w['ssim'])} | {_num(s['rmse'])} | {_num(w['rmse'])} | "
                     f"{_num(s['cosine'])} | {_num(w['cosine'])} |")  # fmt: skip
    lines += ["", "Prompt rewrites: " + "; ".join(f"{k}: '{a['rewrite']}'" for k, a in r["additions"].items()) + ".",
              "", "## Removals", "", "On the seeds whose plain image has the attribute; success: the oracle no longer reads it.", "",
              "| edit | seeds | success | isolation | SSIM | RMSE | feature cosine |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, a in r["removals"].items():
        s = a["sega"]
        lines.append(f"| {name} | {a['seeds']} | {_rate(s['success'])} | {_pct(s['isolation']['unchanged'])} | "
                     f"{_num(s['composition']['ssim'])} | {_num(s['composition']['rmse'])} | {_num(s['composition']['cosine'])} |")  # fmt: skip
    lines += ["", "## Four simultaneous edits (Table 2)", "",
              "All seeds; an edit counts as a success when the edited image shows its goal (as the paper's raters judged "
              "the edited image). 'On seeds lacking it': the same, only on the seeds whose plain image lacked that goal.", "",
              "| combination | seeds | >= 1 | >= 2 | >= 3 | all 4 | paper, all 4 | isolation | SSIM |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for c in r["combinations"]:
        al = c["at_least"]
        lines.append(f"| {' + '.join(c['edits'])} | {c['seeds']} | {_pct(al['1'])} | {_pct(al['2'])} | {_pct(al['3'])} | {_pct(al['4'])} | "
                     f"{_pct(c['paper_all_four'])} | {_pct(c['isolation']['unchanged'])} | {_num(c['composition']['ssim'])} |")  # fmt: skip
    lines += ["", "| combination | edit | success, all seeds | success, on seeds lacking it |", "|---|---|---|---|"]
    for c in r["combinations"]:
        for name, e in c["per_edit"].items():
            lines.append(f"| {' + '.join(c['edits'])} | {name} | {_rate(e['all_seeds'])} | {_rate(e['seeds_lacking'])} |")
    scales = cfg["sweep"]
    lines += ["", "## Monotonicity", "",
              f"Per target, up to {cfg['sweep_seeds']} of its seeds at scales {', '.join(f'{s:g}' for s in scales)} (0: the plain image); "
              "the oracle's probability of the edit's goal (for a removal: of the attribute's absence). Spearman rho per seed; "
              "'increasing': share of seeds with rho > 0; 'undefined': seeds whose probability did not move.", "",
              "| target | seeds | mean rho | median rho | increasing | undefined | rho of the mean curve | mean probability by scale |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, m in r["monotonicity"].items():
        curve = " ".join(_num(v, 2) for v in m["mean_probability"])
        lines.append(f"| {name} | {m['seeds']} | {_num(m['spearman_mean'])} | {_num(m['spearman_median'])} | {_pct(m['share_increasing'])} | "
                     f"{m['undefined']} | {_num(m['spearman_of_mean'])} | {curve} |")  # fmt: skip
    u = r["uniqueness"]
    lines += ["", "## Uniqueness", "",
              f"The glasses guidance recorded on '{u['source_prompt']}' for {u['seeds']} seeds (`record_guidance=True`; success there: "
              f"{_rate(u['source_success'])}) is re-applied with `sem_guidance=` to other prompts with the same seeds; scored on the "
              "seeds whose plain image of that prompt lacks glasses, next to a fresh SEGA edit of that prompt.", "",
              "| prompt | seeds lacking glasses | re-applied | fresh SEGA edit | SSIM re-applied vs plain |", "|---|---|---|---|---|"]  # fmt: skip
    for prompt, p in u["prompts"].items():
        lines.append(f"| {prompt} | {p['seeds_lacking']} | {_rate(p['reapplied'])} | {_rate(p['direct'])} | {_num(p['ssim_reapplied_to_plain'])} |")
    lines += ["", "## Untargeted attributes that changed most (SEGA additions)", "",
              "| attribute edited | most changed untargeted attributes (rate) |", "|---|---|"]
    for name, a in r["additions"].items():
        changed = sorted(((v, k) for k, v in a["sega"]["isolation"]["changed"].items() if not _missing(v) and v > 0), reverse=True)[:3]
        shown = ", ".join(f"{k} {_pct(v)}" for v, k in changed) or ("none" if a["seeds"] else "- (0 seeds)")
        lines.append(f"| {name} | {shown} |")
    if figures:
        lines += ["", "## Figures", ""] + [f"![{Path(f).stem}]({Path(f).name})" for f in figures]
    return "\n".join(lines) + "\n"


def _json_ready(obj):
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    return obj


def write_report(study: Study, report: dict, out: Path, command: str) -> list[Path]:
    """``out/report.json``, ``out/report.md`` and the figures (PNG), each written atomically."""
    from segakit.atomic import atomic_open, ensure_writable_dir
    from segakit.eval.sega_figures import write_figures

    out = ensure_writable_dir(Path(out))
    figures = write_figures(study, report, out)
    report = {**report, "command": command, "figures": [p.name for p in figures]}
    with atomic_open(out / "report.json", "w") as fh:
        json.dump(_json_ready(report), fh, indent=2)
    with atomic_open(out / "report.md", "w") as fh:
        fh.write(markdown(report, command, [p.name for p in figures]))
    return [out / "report.json", out / "report.md", *figures]


def run_study(pipe, oracle, cfg: StudyConfig, out: Path, command: str, progress: StudyProgress | None = None,
              model_name: str = "") -> tuple[dict, list[Path]]:  # fmt: skip
    """Run (or resume) the study with its cache in ``out/cache`` and write the report into ``out``."""
    study = Study(pipe, oracle, cfg, Path(out) / "cache", progress, model_name)
    report = study.run()
    return report, write_report(study, report, out, command)
