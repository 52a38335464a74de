"""Running the SEGA study: its units of work (one edit on its seeds, one sweep, one figure), each cached under
``DIR/cache/`` in a file named by a hash of everything it depends on, written atomically."""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from segakit.core.fingerprint import fingerprint, pipeline_fingerprint
from segakit.eval.sega_study.chunks import generate_chunk, guided_chunk
from segakit.eval.sega_study.config import StudyConfig, StudyProgress
from segakit.eval.sega_study.measures import (
    ATTRS,
    COLUMNS,
    composition,
    decode,
    encode,
    goal_probability,
    to_float,
)
from segakit.eval.sega_study.summary import json_ready, summarize
from segakit.eval.targets import (
    COMBINATIONS,
    GLASSES,
    REMOVALS,
    STUDY_ADDITIONS,
    Target,
    by_name,
)
from segakit.jobs.calls import CallRunner
from segakit.jobs.local import InProcess
from segakit.jobs.worker import WorkerConfig
from segakit.sega.guidance import Edit

CACHE_VERSION = 1
COMPUTE_KEY = "_compute_s"  # extra array in each cache file: the seconds its unit took to compute


# ------------------------------------------------------------------------------------------ the cache
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
        from segakit.core.atomic import atomic_open, ensure_writable_dir

        self.folder = ensure_writable_dir(Path(folder))
        ignore = self.folder / ".gitignore"
        if not ignore.exists():
            with atomic_open(ignore, "w") as fh:
                fh.write("# segakit eval sega cache: regenerable, not for version control\n*\n")

    def path(self, unit: Unit) -> Path:
        key = hashlib.sha256(
            json.dumps({"v": CACHE_VERSION, **unit.spec}, sort_keys=True, default=str).encode()
        ).hexdigest()[:16]
        slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in unit.name)
        return self.folder / f"{slug}-{key}.npz"

    def load(self, unit: Unit) -> dict[str, np.ndarray] | None:
        path = self.path(unit)
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}

    def save(self, unit: Unit, arrays: dict[str, np.ndarray]) -> None:
        from segakit.core.atomic import atomic_open

        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        with atomic_open(self.path(unit), "wb") as fh:
            fh.write(buffer.getvalue())


# ------------------------------------------------------------------------------------------ the study
class Study:
    """Runs the study's units (cached), then summarises them into the report and draws the figures.

    Images are made through the batch runner, one call per chunk of ``cfg.batch`` seeds: ``runner`` (a
    :class:`segakit.jobs.calls.CallRunner` on local workers or Ray actors loading ``model_name``), or by default
    this process with ``pipe``. The oracle reads them here."""

    def __init__(self, pipe, oracle, cfg: StudyConfig, cache_dir: Path, progress: StudyProgress | None = None,
                 model_name: str = "", runner: CallRunner | None = None) -> None:  # fmt: skip
        self.pipe, self.oracle, self.cfg = pipe, oracle, cfg.check()
        self.runner = runner or CallRunner(InProcess(WorkerConfig(threads=0), pipe=pipe, model=model_name), model_name)
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
        if cfg.edit_refresh != 1:  # absent at 1, so exact SEGA's cached units stay valid
            self.common["edit_refresh"] = cfg.edit_refresh
        if cfg.guidance_refresh != 1:  # likewise
            self.common["guidance_refresh"] = cfg.guidance_refresh
        self.seeds = cfg.seed_list()
        self.cached = 0
        self.units = 0
        self.compute_s = 0.0  # seconds the units took when they were computed (cached or not)
        self.unrecorded = 0  # units whose cache file predates the recorded compute time

    # ---- generation and reading
    def _split(self, seeds: Sequence[int]) -> list[list[int]]:
        return [[int(s) for s in seeds[i : i + self.cfg.batch]] for i in range(0, len(seeds), self.cfg.batch)]

    def _generate(self, prompt: str, seeds: Sequence[int], edits: Sequence[Edit] = ()) -> np.ndarray:
        if not len(seeds):
            return np.zeros((0, 3, 64, 64), np.uint8)
        args = [
            (
                prompt,
                chunk,
                self.cfg.steps,
                self.cfg.guidance,
                list(edits),
                self.cfg.edit_refresh,
                self.cfg.guidance_refresh,
            )
            for chunk in self._split(seeds)
        ]
        done = self.runner.map(generate_chunk, args, lambda r: self.progress.advance(len(r.value)))
        return np.concatenate([r.value for r in done])

    def _chunks(self, prompt: str, seeds: Sequence[int], edits: Sequence[Edit] = (), record: bool = False,
                reuse: torch.Tensor | None = None) -> tuple[np.ndarray, torch.Tensor | None]:  # fmt: skip
        """Like :meth:`_generate`, recording the semantic guidance or re-applying a recorded one."""
        chunks, args, start = self._split(seeds), [], 0
        for chunk in chunks:
            part = None if reuse is None else np.ascontiguousarray(reuse[:, start : start + len(chunk)].numpy())
            args.append(
                (
                    prompt,
                    chunk,
                    self.cfg.steps,
                    self.cfg.guidance,
                    list(edits),
                    record,
                    part,
                    self.cfg.edit_refresh,
                    self.cfg.guidance_refresh,
                )
            )
            start += len(chunk)
        done = self.runner.map(guided_chunk, args, lambda r: self.progress.advance(len(r.value[0])))
        images = np.concatenate([r.value[0] for r in done])
        return images, (torch.cat([torch.from_numpy(r.value[1]) for r in done], dim=1) if record else None)

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

        spec = self._spec(
            "sweep", prompt=self.cfg.prompt, seeds=seeds, edits=[asdict(self.cfg.edit(t, scale=s)) for s in scales if s]
        )
        return Unit(f"sweep-{t.name}", len(seeds) * sum(1 for s in scales if s), spec, compute)

    def _record_unit(self) -> Unit:
        seeds = self.seeds[: self.cfg.unique_seeds]
        edit = self.cfg.edit(GLASSES)

        def compute():
            u8, guidance = self._chunks(self.cfg.prompt, seeds, [edit], record=True)
            return {"labels": self._read(u8)["labels"], "guidance": guidance.numpy()}

        return Unit(
            "unique-record",
            len(seeds),
            self._spec("record", prompt=self.cfg.prompt, seeds=seeds, edits=[asdict(edit)]),
            compute,
        )

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

        spec = self._spec(
            "unique", prompt=prompt, seeds=seeds, edits=[asdict(edit)], record=self.cache.path(record).name
        )
        return Unit(f"unique-{j}", 3 * len(seeds), spec, compute)

    def _combination_figure_unit(self) -> Unit:
        seeds = self.seeds[: self.cfg.figure_seeds]
        calls = [[self.cfg.edit(t) for t in combo[:k]] for combo in COMBINATIONS for k in range(1, len(combo) + 1)]

        def compute():
            shape = (len(COMBINATIONS), len(COMBINATIONS[0]))
            images = np.stack([self._generate(self.cfg.prompt, seeds, edits) for edits in calls])
            return {"images": images.reshape(*shape, *images.shape[1:])}

        spec = self._spec(
            "figure-combination", prompt=self.cfg.prompt, seeds=seeds, calls=[[asdict(e) for e in c] for c in calls]
        )
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
        return Unit(
            "figure-grid", n, self._spec("figure-grid", prompt=self.cfg.prompt, seed=seed, calls=calls), compute
        )

    # ---- the run
    def plan(self) -> list[Unit]:
        """The units after the plain images: which seeds each edit is scored on follows from their labels."""
        cfg, labels = self.cfg, decode(self.plain["labels"])
        # the seeds each edit is scored on: an addition where the plain image lacks it, a removal where it has it
        needs = {
            t.name: [i for i, lab in enumerate(labels) if not t.achieved(lab)] for t in (*STUDY_ADDITIONS, *REMOVALS)
        }
        units = []
        for t in STUDY_ADDITIONS:
            units.append(self._edit_unit(f"add-{t.name}", needs[t.name], cfg.prompt, [cfg.edit(t)]))
            units.append(self._edit_unit(f"rewrite-{t.name}", needs[t.name], t.rewrite(cfg.prompt), []))
        for t in REMOVALS:
            units.append(self._edit_unit(f"remove-{t.name}", needs[t.name], cfg.prompt, [cfg.edit(t)]))
        for k, combo in enumerate(COMBINATIONS):
            units.append(
                self._edit_unit(f"combination-{k + 1}", range(len(labels)), cfg.prompt, [cfg.edit(t) for t in combo])
            )
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
        report = json_ready(summarize(self.cfg, self.plain, self.data))  # NaN (no seeds) -> None, as in report.json
        report["model"] = {
            "name": self.model_name,
            "fingerprint": self.common["model"],
            "oracle": self.common["oracle"],
            "sampler": type(self.pipe.scheduler).__name__,
        }
        report["run"] = {"wall_s": round(time.perf_counter() - start, 1), "units": self.units, "units_from_cache": self.cached,
                         "images": plain_unit.images + sum(u.images for u in units),
                         "compute_s": round(self.compute_s, 1), "units_without_compute_time": self.unrecorded}  # fmt: skip
        return report
