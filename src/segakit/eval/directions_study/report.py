"""The directions study's report: :func:`run_study` runs the sections and writes report.json, report.md and figures."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

from segakit.core.atomic import atomic_open, ensure_writable_dir
from segakit.core.fingerprint import fingerprint
from segakit.eval.directions_study.config import DirectionsStudyConfig
from segakit.eval.directions_study.figures import write_figures
from segakit.eval.directions_study.render import Bench
from segakit.eval.directions_study.run import Progress, Study
from segakit.eval.sega_study.summary import json_ready

TARGETS = {"presentation": 0.05, "skin": 0.10}  # the deviation-ratio targets


def _n(x, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _p(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def run_study(pipe, oracle, library, cfg: DirectionsStudyConfig, out: Path, command: str, progress: Progress | None = None,
              model_name: str = "", cache: Path | None = None, runner=None) -> tuple[dict, list[Path]]:  # fmt: skip
    """Run (or resume, from ``cache``, default ``out/cache``) the sections ``cfg.sections`` and write the report into ``out``;
    ``runner``: a :class:`segakit.jobs.calls.CallRunner` that makes the images elsewhere (default: this process)."""
    cfg = cfg.check()
    out = ensure_writable_dir(Path(out))
    study = Study(
        Bench(pipe, library, cfg), oracle, Path(cache) if cache is not None else out / "cache", progress, runner
    )
    t0 = time.perf_counter()
    results, walls = {}, {}
    for section in cfg.sections:
        t = time.perf_counter()
        results[section] = getattr(study, section)()
        walls[section] = time.perf_counter() - t
    results["seconds_per_image"] = study.arm_seconds()
    report = {
        "command": command,
        "config": asdict(cfg),
        "seeds": {
            "first": cfg.first_seed,
            "per_prompt": cfg.seeds,
            "sweep": cfg.sweep_seeds,
            "note": "image i of every prompt and arm uses seed first + i (one generator per image)",
        },
        "model": {
            "name": model_name,
            "fingerprint": study.model_id,
            "unet": fingerprint(pipe.family.denoiser),  # the U-Net or the transformer
            "sampler": type(pipe.scheduler).__name__,
            "library": str(library.folder),
            "library_fingerprint": study.library_id,
            "library_unet": library.meta.get("unet"),
            "strength": study.bench.strength,
            # what the library says beyond its strength, unless --strength overrides it all
            **{
                k: {} if cfg.strength is not None else dict(library.meta.get(k, {}))
                for k in ("strengths", "recipes", "draws")
            },
            "oracle": fingerprint(oracle.net) if hasattr(oracle, "net") else type(oracle).__name__,
        },
        "wall_seconds": {"total": time.perf_counter() - t0, **walls},
        "shots": {
            "made": sum(not s.cached for s in study._shots.values()),
            "from_cache": sum(s.cached for s in study._shots.values()),
        },
        "results": results,
    }
    meta = {"command": command, "model": study.model_id}
    paths = [
        _write(out / "report.json", json.dumps(json_ready(report), indent=1)),
        _write(out / "report.md", markdown(report)),
    ]
    return report, paths + write_figures(study.figures, out, meta)


def _write(path: Path, text: str) -> Path:
    with atomic_open(path, "w") as fh:
        fh.write(text + "\n")
    return path


def markdown(report: dict) -> str:
    r, cfg, model = report["results"], report["config"], report["model"]
    lines = [
        "# Self-discovered directions and their peers (issue 16)", "",
        f"Produced by `{report['command']}` in {report['wall_seconds']['total']:.0f} s wall time "
        f"({report['shots']['made']} image sets made, {report['shots']['from_cache']} from the cache). Model "
        f"`{model['name']}` (weights {model['fingerprint']}, denoiser {model['unet']}); direction library {model['library_fingerprint']} "
        f"learned on denoiser {model['library_unet']}, used at strength {model['strength']:g}"
        + "".join(f" ({n} at {v:g})" for n, v in sorted(model.get("strengths", {}).items()))
        + "".join(f"; fair draws of {n} add {' + '.join(f'{d} at {st:g}' for d, st in r)} (calibrated)" for n, r in sorted(model.get("recipes", {}).items()))
        + "".join(f"; {a} drawn at calibrated shares " + ", ".join(f"{v} {p:.3f}" for v, p in d.items()) for a, d in sorted(model.get("draws", {}).items()))
        + f"; oracle {model['oracle']}.", "",
        f"{cfg['seeds']} seeds per prompt ({cfg['first_seed']}..{cfg['first_seed'] + cfg['seeds'] - 1}; image i of every prompt and "
        f"method uses seed i), {cfg['steps']} steps of {model.get('sampler', 'DDIMScheduler')}, guidance {cfg['guidance']:g}. How it is measured: docs/results/directions/notes.md.",
    ]  # fmt: skip
    if "fairness" in r:
        lines += _fairness(r["fairness"])
    if "safety" in r:
        lines += _safety(r["safety"])
    if "enhance" in r:
        lines += _enhance(r["enhance"])
    if "monotonicity" in r:
        lines += ["", "## Monotonicity", "", "Spearman correlation of the oracle's probability of the direction's value against the "
                  f"strength {', '.join(f'{s:g}' for s in cfg['sweep_strengths'])}, per seed ({cfg['sweep_seeds']} seeds).", "",
                  "| direction | prompt | share with the value at each strength | mean rho | rho of the mean curve | seeds increasing |",
                  "|---|---|---|---:|---:|---:|"]  # fmt: skip
        for name, row in r["monotonicity"].items():
            if row.get("missing"):
                lines.append(f"| {name} | {row['prompt']} | not in the library | | | |")
                continue
            lines.append(f"| {name} | {row['prompt']} | {' / '.join(_n(s, 2) for s in row['share'])} | {_n(row['spearman_mean'])} | "
                         f"{_n(row['spearman_of_mean'])} | {_p(row['share_increasing'])} |")  # fmt: skip
    if "composition" in r:
        c = r["composition"]
        lines += ["", "## Composition", ""]
        if c.get("missing"):
            lines.append(f"The library lacks one of {', '.join(c['directions'])}.")
        else:
            a, b = c["directions"]
            lines += [f"'{c['prompt']}' with {a} and {b} together (each at the library's strength):", "",
                      f"| | {a} | {b} | both |", "|---|---:|---:|---:|"]  # fmt: skip
            for label in ("plain", "together"):
                lines.append(
                    f"| {label} | {_p(c[label]['each'][a])} | {_p(c[label]['each'][b])} | {_p(c[label]['both'])} |"
                )
    if "cost" in r:
        c = r["cost"]
        lines += ["", "## Cost", "", f"{c['images']} images of 'a doctor', plain and with {c['direction']}, interleaved in one run, "
                  f"median of {len(c['plain_seconds'])}: {min(c['plain_seconds']):.2f}-{max(c['plain_seconds']):.2f} s plain, "
                  f"{min(c['direction_seconds']):.2f}-{max(c['direction_seconds']):.2f} s with the direction: **ratio {c['ratio']:.3f}** "
                  "(target 1.02 or less).", "", "Seconds per image by method, over this run's image sets: "
                  + ", ".join(f"{k} {v:.2f}" for k, v in sorted(r.get("seconds_per_image", {}).items())) + ".", "",
                  "Learning time per direction (from each file's metadata):", "", "| direction | images | steps | generating s | learning s |",
                  "|---|---:|---:|---:|---:|"]  # fmt: skip
        for name, row in c["learning"].items():
            lines.append(
                f"| {name} | {row['images']} | {row['steps']} | {row['seconds_generating']} | {row['seconds_learning']} |"
            )
    lines += [
        "",
        "Wall time by section: " + ", ".join(f"{k} {v:.0f} s" for k, v in report["wall_seconds"].items()) + ".",
    ]
    return "\n".join(lines)


def _fairness(f: dict) -> list[str]:
    lines = ["", "## Fairness", "", "Deviation ratio `max |share - 1/K| / (1 - 1/K)` (0: balanced), averaged over the roles (worst role in "
             "brackets); the share of the images that show the value drawn for them; the share of the other attributes the "
             "oracle reads as on the plain image of the same seed; SSIM to that image. Both fair methods draw the same value "
             "per image (from its seed), with equal shares, unless the header names calibrated draw shares for the directions. "
             "The reference draws as Fair Diffusion does and names it in the prompt ('a doctor, woman'): what "
             "asking for the value in words changes on this model.", "",
             "| attribute | method | deviation ratio | target | reads the drawn value | others unchanged | SSIM |",
             "|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    names = {
        "plain": "plain",
        "fair-directions": "self-discovered directions",
        "fair-sega": "Fair Diffusion (SEGA)",
        "fair-rewrite": "reference: the prompt naming the value",
    }
    for attribute, methods in f["summary"].items():
        for method, row in methods.items():
            lines.append(f"| {attribute} | {names[method]} | {_n(row['deviation_ratio'])} ({_n(row['deviation_ratio_max'])}) | "
                         f"{TARGETS.get(attribute, '')} | {_p(row.get('follows'))} | {_p(row.get('others_unchanged'))} | {_n(row.get('ssim'))} |")  # fmt: skip
    lines += ["", "Per role: deviation ratio plain / directions / Fair Diffusion, and others unchanged for the two (and for the "
              "reference, the prompt naming the value).", "",
              "| role | attribute | plain | directions | Fair Diffusion | unchanged: directions | unchanged: Fair Diffusion | unchanged: reference |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for role, attrs in f["by_role"].items():
        for attribute, e in attrs.items():
            lines.append(f"| {role} | {attribute} | {_n(e['plain']['deviation_ratio'])} | {_n(e['fair-directions']['deviation_ratio'])} | "
                         f"{_n(e['fair-sega']['deviation_ratio'])} | {_p(e['fair-directions']['others_unchanged'])} | "
                         f"{_p(e['fair-sega']['others_unchanged'])} | {_p(e['fair-rewrite']['others_unchanged'])} |")  # fmt: skip
    lines += ["", "Generalisation: the presentation directions were learned on 'a face of a person'; the share of images that show "
              "the drawn value, per role and value (self-discovered directions; Fair Diffusion in brackets).", "",
              "| role | man | woman |", "|---|---:|---:|"]  # fmt: skip
    for role, attrs in f["by_role"].items():
        if "presentation" in attrs:
            d, s = (
                attrs["presentation"]["fair-directions"]["follows_by_value"],
                attrs["presentation"]["fair-sega"]["follows_by_value"],
            )
            lines.append(
                f"| {role} | {_p(d.get('man'))} ({_p(s.get('man'))}) | {_p(d.get('woman'))} ({_p(s.get('woman'))}) |"
            )
    return lines


def _safety(s: dict) -> list[str]:
    prompts = list(next(iter(s["horror_by_prompt"].values())))
    lines = ["", "## Safety", "", f"Share of images the oracle reads as horror over {len(prompts)} prompts ({', '.join(repr(p) for p in prompts)}); "
             "the share of the plain model's horror removed; on non-horror prompts "
             f"({', '.join(repr(p) for p in next(iter(s['collateral_by_prompt'].values())))}) the share of the other attributes each method "
             "changes against the plain image of the same seed, and SSIM to it. "
             + ("SLD: diffusers' StableDiffusionPipelineSafe at its presets, safety concept 'a zombie'. "
                if any(name.startswith("SLD") for name in s["summary"])
                else "SLD is left out: diffusers' StableDiffusionPipelineSafe runs U-Nets only. ")
             + "Target: 95% removed with 5% or less changed.", "",
             "| method | horror | removed | collateral change | collateral SSIM |", "|---|---:|---:|---:|---:|"]  # fmt: skip
    for name, row in s["summary"].items():
        lines.append(
            f"| {name} | {_p(row['horror'])} | {_p(row['removed'])} | {_p(row.get('collateral_changed'))} | {_n(row.get('collateral_ssim'))} |"
        )
    lines += [
        "",
        "Per prompt (horror share):",
        "",
        "| method | " + " | ".join(prompts) + " |",
        "|---|" + "---:|" * len(prompts),
    ]
    for name, by in s["horror_by_prompt"].items():
        lines.append(f"| {name} | " + " | ".join(_p(by[p]) for p in prompts) + " |")
    return lines


def _enhance(e: dict) -> list[str]:
    lines = ["", "## Text-enhancing", "", "The share of images that show the attribute value the prompt names, plain and with "
             "`--enhance` (the library's directions for the values the prompt names). Target: 90% or more for every value.", "",
             "| value | prompt | plain | with --enhance |", "|---|---|---:|---:|"]  # fmt: skip
    for name, row in e["by_value"].items():
        lines.append(
            f"| {name} | {row['prompt']} | {_p(row['without'])} | {_p(row['with']) if row['with'] is not None else 'no direction in the library'} |"
        )
    if e["missing_directions"]:
        lines += ["", f"Missing from the library (nothing to enhance with): {', '.join(e['missing_directions'])}."]
    return lines
