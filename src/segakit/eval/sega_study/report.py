"""The SEGA study's report: report.json, report.md and the figures; :func:`run_study` runs and writes it all."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from segakit.eval.sega_study.config import StudyConfig, StudyProgress
from segakit.eval.sega_study.run import Study
from segakit.eval.sega_study.summary import json_ready


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
        f"oracle weights {report.get('model', {}).get('oracle', '')}. How it is measured: docs/results/sega/notes.md.", "",
        f"{cfg['seeds']} seeds ({cfg['first_seed']}..{cfg['first_seed'] + cfg['seeds'] - 1}) of '{cfg['prompt']}', "
        f"{cfg['steps']} steps of {report.get('model', {}).get('sampler', 'DDIMScheduler')}, guidance {cfg['guidance']:g}; every edit: scale {cfg['scale']:g}, threshold "
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
        lines.append(
            f"| {name} | {_num(s['ssim'])} | {_num(b['ssim'])} | {_num(s['rmse'])} | {_num(b['rmse'])} | {_num(s['cosine'])} | {_num(b['cosine'])} |"
        )
    lines += ["", "The same measures on the seeds where both SEGA and the rewrite reached the attribute (an edit that fails and "
              "changes nothing preserves the composition trivially, so this is the fair comparison; 'all' is seed-weighted):", "",
              "| attribute | seeds | SEGA SSIM | rewrite SSIM | SEGA RMSE | rewrite RMSE | SEGA feature cosine | rewrite feature cosine |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, b in [
        *((k, a["both_succeeded"]) for k, a in r["additions"].items()),
        ("all", r["additions_both_succeeded"]),
    ]:
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
            lines.append(
                f"| {' + '.join(c['edits'])} | {name} | {_rate(e['all_seeds'])} | {_rate(e['seeds_lacking'])} |"
            )
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
        lines.append(
            f"| {prompt} | {p['seeds_lacking']} | {_rate(p['reapplied'])} | {_rate(p['direct'])} | {_num(p['ssim_reapplied_to_plain'])} |"
        )
    lines += [
        "",
        "## Untargeted attributes that changed most (SEGA additions)",
        "",
        "| attribute edited | most changed untargeted attributes (rate) |",
        "|---|---|",
    ]
    for name, a in r["additions"].items():
        changed = sorted(
            ((v, k) for k, v in a["sega"]["isolation"]["changed"].items() if not _missing(v) and v > 0), reverse=True
        )[:3]
        shown = ", ".join(f"{k} {_pct(v)}" for v, k in changed) or ("none" if a["seeds"] else "- (0 seeds)")
        lines.append(f"| {name} | {shown} |")
    if figures:
        lines += ["", "## Figures", ""] + [f"![{Path(f).stem}]({Path(f).name})" for f in figures]
    return "\n".join(lines) + "\n"


def write_report(study: Study, report: dict, out: Path, command: str) -> list[Path]:
    """``out/report.json``, ``out/report.md`` and the figures (PNG), each written atomically."""
    from segakit.core.atomic import atomic_open, ensure_writable_dir
    from segakit.eval.sega_study.figures import write_figures

    out = ensure_writable_dir(Path(out))
    figures = write_figures(study, report, out)
    report = {**report, "command": command, "figures": [p.name for p in figures]}
    with atomic_open(out / "report.json", "w") as fh:
        json.dump(json_ready(report), fh, indent=2)
    with atomic_open(out / "report.md", "w") as fh:
        fh.write(markdown(report, command, [p.name for p in figures]))
    return [out / "report.json", out / "report.md", *figures]


def run_study(pipe, oracle, cfg: StudyConfig, out: Path, command: str, progress: StudyProgress | None = None,
              model_name: str = "", runner=None) -> tuple[dict, list[Path]]:  # fmt: skip
    """Run (or resume) the study with its cache in ``out/cache`` and write the report into ``out``; ``runner``: a
    :class:`segakit.jobs.calls.CallRunner` that makes the images elsewhere (default: this process, ``pipe``)."""
    study = Study(pipe, oracle, cfg, Path(out) / "cache", progress, model_name, runner)
    report = study.run()
    return report, write_report(study, report, out, command)
