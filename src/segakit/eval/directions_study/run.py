"""Running the directions study: each section makes its images (through :func:`render`, shared where the same
arm, prompt and seeds recur: one plain image per seed and prompt), reads them with the oracle and measures.

Images are cached under ``DIR/cache/`` (8-bit, safetensors, written atomically) in a file named by a hash of
everything they depend on (the model's and the library's weights, arm, prompt, seeds, steps, guidance, strength,
batch), so an interrupted run resumes; wall times are stored with them.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from segakit.core.atomic import atomic_open, ensure_writable_dir
from segakit.core.fingerprint import pipeline_fingerprint
from segakit.directions.library import key
from segakit.eval.directions_study import measures as m
from segakit.eval.directions_study.config import PLAIN, Arm, fair_arms, safety_arms
from segakit.eval.directions_study.render import Bench, chunk_args, fair_choices, render, render_chunk
from segakit.eval.sega_study.measures import monotonicity
from segakit.sega.guidance import MODEL_DEFAULT_FIELDS

SEGA_ARMS = ("sega-reverse", "fair-sega")  # the arms whose images SEGA edits make
CACHE_VERSION = 2  # 2: the library enters the key only through the directions an arm adds


class Progress:
    """What the study tells a progress display (here: nothing). Counts are images."""

    def unit(self, name: str) -> None: ...

    def advance(self, images: int) -> None: ...


@dataclass
class Shot:
    """One arm's images of one prompt: 8-bit images, the oracle's labels, the seconds they took (cached: as first made)."""

    images: torch.Tensor
    labels: list[dict]
    seconds: float
    cached: bool = False


def library_fingerprint(library, names: list[str] | None = None) -> str:
    """The weights of the library's directions ``names`` (default: all of them)."""
    names = library.names() if names is None else sorted(names)
    h = hashlib.sha256(json.dumps({n: library.files[n] for n in names}, sort_keys=True).encode())
    for name in names:
        h.update((library.folder / library.files[name]).read_bytes())
    return h.hexdigest()[:16]


def arm_directions(library, arm: Arm) -> list[str]:
    """The library directions ``arm`` adds (none for the plain model and the peers)."""
    if arm.kind == "directions":
        return list(arm.names)
    if arm.kind == "fair-directions":
        return [key(arm.param, v) for v in library.values(arm.param)]
    return []


class Study:
    """The study's sections on ``bench``. ``runner`` (a :class:`segakit.jobs.calls.CallRunner` on local workers or
    Ray actors) makes the images of every shot, chunk by chunk as :func:`render` does; without one, this process
    does. The cost section always times this process's pipeline."""

    def __init__(
        self, bench: Bench, oracle, cache: Path | None = None, progress: Progress | None = None, runner=None
    ) -> None:
        self.bench, self.oracle, self.progress = bench, oracle, progress or Progress()
        self.runner = runner
        self.cache = ensure_writable_dir(cache) if cache is not None else None
        self.model_id = pipeline_fingerprint(bench.pipe)
        self.library_id = library_fingerprint(bench.library)
        self._shots: dict[tuple, Shot] = {}
        self.figures: dict[str, list] = {}

    def seeds(self, n: int | None = None) -> list[int]:
        cfg = self.bench.cfg
        return list(range(cfg.first_seed, cfg.first_seed + (n or cfg.seeds)))

    # ---- images
    def _key(self, arm: Arm, prompt: str, seeds: list[int], strength: float | None) -> str:
        """What the shot's images depend on: the library enters only through the directions the arm adds (their
        weights and strengths), so relearning one direction remakes only the shots that use it."""
        cfg, lib = self.bench.cfg, self.bench.library
        used = arm_directions(lib, arm)
        what = {"v": CACHE_VERSION, "model": self.model_id, "arm": asdict(arm), "prompt": prompt,
                "seeds": [seeds[0], len(seeds)], "steps": cfg.steps, "guidance": cfg.guidance, "batch": cfg.batch}  # fmt: skip
        if arm.kind.startswith("fair-"):  # the spread draw (absent: the random draw of the images cached before it)
            what["draw"] = "spread"
        if arm.kind in SEGA_ARMS:  # their edits take the model's edit defaults, which a release may change
            what["edit"] = [getattr(self.bench.pipe.edit_defaults, f) for f in MODEL_DEFAULT_FIELDS]
        if used:
            what["library"] = library_fingerprint(lib, used)
            what["strengths"] = {n: self.bench.strength_of(n) if strength is None else strength for n in used}
        if used and arm.kind == "fair-directions" and cfg.strength is None and strength is None:
            # calibration, where there is any (absent without it: the images cached before it stay valid)
            recipes = {n: lib.recipe(n) for n in used if n in lib.meta.get("recipes", {})}
            shares = lib.draw_shares(arm.param)
            if recipes:
                what["recipes"] = recipes
            if shares:
                what["draw_shares"] = shares
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:20]

    def shot(self, arm: Arm, prompt: str, n: int | None = None, strength: float | None = None) -> Shot:
        seeds = self.seeds(n)
        memo = (arm, prompt, len(seeds), strength)
        if memo in self._shots:
            return self._shots[memo]
        key = self._key(arm, prompt, seeds, strength)
        path = self.cache / f"{key}.safetensors" if self.cache is not None else None
        if path is not None and path.is_file():
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as fh:
                images, seconds = fh.get_tensor("images"), float(fh.metadata()["seconds"])
            self.progress.advance(len(seeds))
            cached = True
        else:
            images, seconds = self._render(arm, prompt, seeds, strength)
            cached = False
            if path is not None:
                from safetensors.torch import save

                with atomic_open(path, "wb") as fh:
                    fh.write(
                        save(
                            {"images": images.contiguous()},
                            metadata={"seconds": repr(seconds), "arm": arm.name, "prompt": prompt},
                        )
                    )
        shot = Shot(images, self.oracle.predict(images.float() / 255), seconds, cached)
        self._shots[memo] = shot
        return shot

    def _render(self, arm: Arm, prompt: str, seeds: list[int], strength: float | None) -> tuple[torch.Tensor, float]:
        """The images and the seconds they took (through a runner: the seconds its calls ran, added up)."""
        if self.runner is None:
            t0 = time.perf_counter()
            return render(self.bench, arm, prompt, seeds, strength, self.progress.advance), time.perf_counter() - t0
        done = self.runner.map(render_chunk, chunk_args(self.bench, arm, prompt, seeds, strength),
                               lambda r: self.progress.advance(len(r.value)))  # fmt: skip
        return torch.cat([r.value for r in done]), sum(r.seconds for r in done)

    def _figure(self, name: str, rows: list[tuple[str, torch.Tensor]]) -> None:
        self.figures[name] = rows

    # ---- sections
    def fairness(self) -> dict:
        cfg, out = self.bench.cfg, {}
        for role in cfg.roles:
            self.progress.unit(f"fairness: {role}")
            plain = self.shot(PLAIN, role)
            rows = [("plain", plain.images)]
            out[role] = {}
            for attribute in cfg.attributes:
                entry = {
                    "plain": {
                        "shares": m.shares(plain.labels, attribute),
                        "deviation_ratio": m.deviation_ratio(plain.labels, attribute),
                    }
                }
                for arm in fair_arms(attribute):
                    got = self.shot(arm, role)
                    choices = fair_choices(self.bench, arm, self.seeds())
                    entry[arm.kind] = {
                        "shares": m.shares(got.labels, attribute), "deviation_ratio": m.deviation_ratio(got.labels, attribute),
                        "drawn": {v: choices.count(v) / len(choices) for v in sorted(set(choices))},
                        "follows": m.follows(got.labels, attribute, choices),
                        "follows_by_value": m.follows_by_value(got.labels, attribute, choices),
                        "others_unchanged": m.unchanged(plain.labels, got.labels, [attribute]),
                        "ssim": m.mean_ssim(plain.images, got.images), "seconds_per_image": got.seconds / len(choices),
                    }  # fmt: skip
                    rows.append((arm.name, got.images))
                out[role][attribute] = entry
            self._figure(f"fairness-{role.replace(' ', '-')}.png", rows)
        return {"by_role": out, "summary": _fair_summary(out, cfg.attributes)}

    def safety(self) -> dict:
        cfg, arms = self.bench.cfg, safety_arms(self.bench.cfg.sld)
        horror: dict = {a.name: {} for a in arms}
        for prompt in cfg.horror_prompts:
            self.progress.unit(f"safety: {prompt}")
            rows = []
            for arm in arms:
                got = self.shot(arm, prompt)
                horror[arm.name][prompt] = m.share_true(got.labels, "horror", True)
                rows.append((arm.name, got.images))
            if prompt == cfg.horror_prompts[0]:
                self._figure("safety.png", rows)
        collateral: dict = {a.name: {} for a in arms[1:]}
        for prompt in cfg.clean_prompts:
            self.progress.unit(f"collateral: {prompt}")
            plain = self.shot(PLAIN, prompt)
            for arm in arms[1:]:
                got = self.shot(arm, prompt)
                collateral[arm.name][prompt] = {"changed": 1 - m.unchanged(plain.labels, got.labels, ["horror"]),
                                                "ssim": m.mean_ssim(plain.images, got.images)}  # fmt: skip
        plain_mean = float(np.mean(list(horror["plain"].values())))
        summary = {}
        for arm in arms:
            share = float(np.mean(list(horror[arm.name].values())))
            row = {"horror": share, "removed": m.removed(plain_mean, share)}
            if arm.name in collateral:
                row["collateral_changed"] = float(np.mean([c["changed"] for c in collateral[arm.name].values()]))
                row["collateral_ssim"] = float(np.mean([c["ssim"] for c in collateral[arm.name].values()]))
            summary[arm.name] = row
        return {"horror_by_prompt": horror, "collateral_by_prompt": collateral, "summary": summary}

    def enhance(self) -> dict:
        cfg, lib, out = self.bench.cfg, self.bench.library, {}
        for name, prompt in cfg.enhance:
            self.progress.unit(f"enhance: {name}")
            attribute, value = m.parse_key(name)
            row = {"prompt": prompt, "without": m.share_true(self.shot(PLAIN, prompt).labels, attribute, value)}
            names = tuple(lib.enhance(prompt))
            row["directions"] = list(names)
            row["with"] = (
                m.share_true(self.shot(Arm("enhance", "directions", names=names), prompt).labels, attribute, value)
                if names
                else None
            )
            out[name] = row
        missing = [n for n, r in out.items() if r["with"] is None]
        return {"by_value": out, "missing_directions": missing}

    def monotonicity(self) -> dict:
        cfg, out = self.bench.cfg, {}
        for name, prompt in cfg.sweeps:
            if name not in self.bench.library.files:
                out[name] = {"prompt": prompt, "missing": True}
                continue
            self.progress.unit(f"sweep: {name}")
            arm = Arm(f"sweep {name}", "directions", names=(name,))
            probs, shares_at, strip = [], [], []
            attribute, value = m.parse_key(name)
            for s in cfg.sweep_strengths:
                got = self.shot(arm, prompt, cfg.sweep_seeds, strength=s)
                probs.append(m.value_probability(self.oracle.probabilities(got.images.float() / 255), name))
                shares_at.append(m.share_true(got.labels, attribute, value))
                strip.append((f"{s:g}", got.images))
            mono = monotonicity(cfg.sweep_strengths, np.stack(probs, axis=1))
            out[name] = {"prompt": prompt, "share": shares_at, **mono}
            if name == cfg.sweeps[0][0]:
                self._figure("sweep.png", strip)
        return out

    def composition(self) -> dict:
        names, prompt = self.bench.cfg.composition
        if any(n not in self.bench.library.files for n in names):
            return {"directions": list(names), "missing": True}
        self.progress.unit("composition")
        keys = [m.parse_key(n) for n in names]
        res = {}
        for label, arm in (("plain", PLAIN), ("together", Arm("composition", "directions", names=tuple(names)))):
            labels = self.shot(arm, prompt).labels
            each = [m.share_true(labels, a, v) for a, v in keys]
            both = float(np.mean([all(lab[a] == v for a, v in keys) for lab in labels]))
            res[label] = {"each": dict(zip(names, each)), "both": both}
        return {"directions": list(names), "prompt": prompt, **res}

    def cost(self) -> dict:
        """Generation with a direction against plain, interleaved in one run (median of repeats); learning times."""
        cfg, lib = self.bench.cfg, self.bench.library
        self.progress.unit("cost")
        name = "presentation=woman" if "presentation=woman" in lib.files else lib.names()[0]
        seeds = self.seeds(cfg.batch)
        arms = {"plain": PLAIN, "direction": Arm("timing", "directions", names=(name,))}
        render(self.bench, arms["direction"], "a doctor", seeds)  # warm-up
        self.progress.advance(len(seeds))
        times: dict[str, list[float]] = {"plain": [], "direction": []}
        for _ in range(cfg.timing_repeats):
            for arm_name, arm in arms.items():
                t0 = time.perf_counter()
                render(self.bench, arm, "a doctor", seeds, progress=self.progress.advance)
                times[arm_name].append(time.perf_counter() - t0)
        p, d = statistics.median(times["plain"]), statistics.median(times["direction"])
        learning = {n: {k: lib.direction(n).meta.get(k) for k in ("images", "steps", "seconds_generating", "seconds_learning")}
                    for n in lib.names()}  # fmt: skip
        return {"direction": name, "images": len(seeds), "plain_seconds": times["plain"], "direction_seconds": times["direction"],
                "ratio": d / p, "learning": learning}  # fmt: skip

    def arm_seconds(self) -> dict:
        """Seconds per image of each arm, over every shot made in this run (cached shots: as first made)."""
        acc: dict[str, list[float]] = {}
        for (arm, _, n, _), shot in self._shots.items():
            acc.setdefault(arm.kind if arm.kind != "sld" else f"sld {arm.param}", []).append(shot.seconds / n)
        return {k: float(np.mean(v)) for k, v in acc.items()}


def _fair_summary(by_role: dict, attributes) -> dict:
    """Per attribute and method: the mean over roles of the deviation ratio, other attributes unchanged, SSIM."""
    out = {}
    for attribute in attributes:
        out[attribute] = {}
        for method in ("plain", *(arm.kind for arm in fair_arms(attribute))):
            rows = [by_role[r][attribute][method] for r in by_role]
            entry = {"deviation_ratio": float(np.mean([r["deviation_ratio"] for r in rows])),
                     "deviation_ratio_max": float(np.max([r["deviation_ratio"] for r in rows]))}  # fmt: skip
            if method != "plain":
                for k in ("follows", "others_unchanged", "ssim"):
                    entry[k] = float(np.mean([r[k] for r in rows]))
            out[attribute][method] = entry
    return out
