"""The study's outputs: ``report.json`` (every number, every edit, seeds, command, wall times, the weights'
fingerprints), ``report.md`` (the tables), the figures, and the MagicBrush-format pairs and results."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from segakit.core.atomic import atomic_open, ensure_writable_dir
from segakit.eval.editing_study.config import CAPTIONED, METHODS, WRITTEN
from segakit.eval.editing_study.export import write_magicbrush, write_results
from segakit.eval.editing_study.figures import pairs_figure, sessions_figure
from segakit.eval.editing_study.run import NO_EDIT, ROUND_TRIP, TARGET
from segakit.eval.editing_study.summary import summarize

COLUMNS = (("success", "success"), ("follows", "follows the instruction"), ("others_unchanged", "others unchanged"), ("ssim_source", "SSIM to source"),
           ("l1", "L1"), ("l2", "L2"), ("clip_i", "CLIP-I"), ("clip_t", "CLIP-T"))  # fmt: skip


REFERENCES = {
    NO_EDIT: "the turn's input image, unedited (reference row)",
    ROUND_TRIP: "the turn's input encoded and decoded by the model's autoencoder (reference row: an edit-friendly inversion with nothing to edit gives exactly this, so no editor in the latent space keeps more)",
    TARGET: "the world's render of the instructed change, the pair's gold target (reference row: what the oracle reads on a perfect edit)",
}


def build_report(result: dict, command: str, model_name: str) -> dict:
    methods = [NO_EDIT, ROUND_TRIP, TARGET, *result["config"]["methods"]]
    return {
        "command": command,
        "model": {"name": model_name, **result["fingerprints"]},
        "seeds": {
            "world_seed": result["config"]["seed"],
            "edit_seed": result["config"]["edit_seed"],
            "pairs": result["pairs"],
            "sessions": list(range(result["config"]["sessions"])),
        },
        "config": result["config"],
        "run": result["run"],
        "methods": {m: METHODS.get(m, REFERENCES.get(m)) for m in methods},
        "family": result.get("family", "unet"),
        "steps": result.get("steps", {}),
        "summary": summarize(result["records"], methods, result["available"]),
        "records": result["records"],
    }


def _fmt(v, key: str = "") -> str:
    if v is None:
        return "-"
    if key == "l2":
        return f"{v:.4f}"
    if key == "seconds":
        return f"{v:.1f}"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def markdown(report: dict) -> str:
    s, m, cfg = report["summary"], report["model"], report["config"]
    lines = [
        "# Editing study: faces-world edit pairs in MagicBrush's format", "",
        f"Command: `{report['command']}`", "",
        (f"Model `{m['name']}`, weights fingerprint `{m['model']}`; oracle `{m['oracle']}`; CLIP `{m['clip']}`; "
         f"caption writer `{m['caption_writer'] or 'none'}`"
         + (f" sampling at temperature {m['caption_writer_temperature']:g}" if m.get("caption_writer_temperature") else "")
         + (f"; captioner `{m['captioner']}`." if m.get("captioner") else ".")),
        (f"World seed {report['seeds']['world_seed']} (single-change pairs"
         + (f" of {', '.join(cfg['attributes'])}" if cfg.get("attributes") else "")
         + f" {report['seeds']['pairs']}; sessions "
         f"{report['seeds']['sessions']} of {cfg['turns']} turns), edit seed {cfg['edit_seed']}, {steps_words(report)}, "
         f"torch threads {report['run']['torch_threads']}. "
         f"{report['run']['edits']} edits ({report['run']['edits_from_cache']} from the cache this time), which took "
         f"{report['run']['edit_s']} s of wall time when they were computed; this run's wall time {report['run']['wall_s']} s."),
        "", "## Single turn", "",
        "| method | edits | " + " | ".join(h for _, h in COLUMNS) + " | s / edit |",
        "|---|" + "---|" * (len(COLUMNS) + 2),
    ]  # fmt: skip
    for method, entry in s.items():
        if not entry["available"]:
            lines.append(
                f"| {method} | not available: no caption writer (pass `--caption-writer`) |" + " |" * (len(COLUMNS) + 1)
            )
            continue
        row = entry["single"]
        lines.append(
            f"| {method} | {row['edits']} | "
            + " | ".join(_fmt(row[k], k) for k, _ in COLUMNS)
            + f" | {_fmt(row['seconds'], 'seconds')} |"
        )
    for method, entry in s.items():
        stages = entry.get("single", {}).get("stage_seconds") if entry["available"] else None
        if stages:
            lines.append("")
            lines.append(
                f"{method}, seconds per edit by stage: "
                + ", ".join(f"{k} {_fmt(v, 'seconds')}" for k, v in stages.items())
                + (
                    " (captions: the captioner and the caption writer)"
                    if method in CAPTIONED
                    else " (captions: the caption writer)"
                    if method in WRITTEN
                    else ""
                )
            )
    attrs = sorted({a for e in s.values() if e["available"] for a in e["single"]["by_attribute"]})
    shown = [k for k, e in s.items() if e["available"] and k not in REFERENCES]
    lines += ["", "Success by instructed attribute (successes / edits; in brackets, where it differs: edits that follow the instruction):",
              "", "| attribute | " + " | ".join(shown) + " |", "|---|" + "---|" * len(shown)]  # fmt: skip
    for a in attrs:
        cells = [_attribute_cell(s[k]["single"], a) for k in shown]
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    lines += collateral_table(report["records"], shown)
    multi = {k: e["multi"] for k, e in s.items() if e["available"] and "multi" in e}
    if multi:
        lines += ["", "## Multi-turn (each turn edits the method's previous result)", "",
                  "| method | turn | success (this turn) | all turns so far | others unchanged | SSIM to source | L1 | L2 | CLIP-I | CLIP-T |",
                  "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for k, e in multi.items():
            for t in e["turns"]:
                keys = ("success", "all_so_far", "others_unchanged", "ssim_source", "l1", "l2", "clip_i", "clip_t")
                lines.append(f"| {k} | {t['turn']} | " + " | ".join(_fmt(t[x], x) for x in keys) + " |")
    lines += ["", "## Methods", ""] + [f"- **{k}**: {v}" for k, v in report["methods"].items()]
    lines += ["", ("Success: the oracle reads the instructed value (the pair's gold one) on the result. Follows the instruction: "
                   "it reads a value the instruction asks for (the gold one; for a relative skin instruction, 'give him darker "
                   "skin', any tone on that side: the gold tone is one of them drawn at random). Others unchanged: the share of the attributes no "
                   "turn so far instructed that it reads as on the source. L1 / L2: mean absolute / squared pixel difference to "
                   "the target render ([0, 1] pixels); CLIP-I / CLIP-T: cosine of the embedded CLIP's image embeddings of result "
                   "and target / of the result's image and the target caption's text embedding. Seconds: wall time of the edit "
                   "alone (models loaded), when it was computed."), ""]  # fmt: skip
    return "\n".join(lines)


def steps_words(report: dict) -> str:
    """The steps sentence: one count for every U-Net method; on a flow model, each method's."""
    steps = report.get("steps") or {}
    if report.get("family", "unet") == "unet" or not steps:
        count = next(iter(steps.values()), report["config"]["steps"])
        return f"{count} inversion steps = edit steps for every method"
    from segakit.editing.flow import PAPER
    from segakit.editing.flowedit import skipped_steps

    parts = []
    for method, count in steps.items():
        if method.startswith("flowedit"):
            # reports written before models had FlowEdit settings of their own ran the paper's
            strength = report.get("flowedit_strength", PAPER[report["family"]]["strength"])
            edited = count - skipped_steps(count, strength)
            parts.append(f"{method} {count} steps, the last {edited} edited (FlowEdit's strength; no inversion)")
        else:
            parts.append(f"{method} {count} inversion steps + {count} sampling steps")
    return "steps: " + "; ".join(parts)


def _attribute_cell(single: dict, attr: str) -> str:
    c = single["by_attribute"].get(attr)
    if not c:
        return "-"
    f = single.get("follows_by_attribute", {}).get(attr, c)
    return f"{c[0]}/{c[1]}" + (f" ({f[0]})" if f[0] != c[0] else "")


def collateral_table(records: list[dict], methods: list[str]) -> list[str]:
    """Markdown lines: per attribute, how many single-turn edits of each method changed it though no turn asked."""
    counts = {m: Counter() for m in methods}
    for r in records:
        if r["protocol"] == "single-turn" and r["method"] in counts:
            counts[r["method"]].update(r.get("others_changed", []))
    total = sum(counts.values(), Counter())
    attrs = sorted(total, key=lambda a: (-total[a], a))
    if not attrs:
        return []
    lines = ["", "What else changed: single-turn edits whose result the oracle reads differently from the source on an "
             "attribute the instruction did not name (most changed first):", "",
             "| attribute | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]  # fmt: skip
    return lines + [f"| {a} | " + " | ".join(str(counts[m][a]) for m in methods) + " |" for a in attrs]


def figure_notes(records: list[dict]) -> dict[str, str]:
    """Per single-turn pair: the concepts SEGA and the peer were given, and the caption writer's first "after" caption."""
    notes: dict[str, list[str]] = {}
    for r in records:
        if r["protocol"] != "single-turn":
            continue
        if r["method"] in ("sega", "sega-flow") and r.get("concepts"):
            notes.setdefault(r["item"], []).insert(0, "concepts: " + ", ".join(r["concepts"]))
        if r["method"] in ("onthefly-lm", "flowedit-lm") and r.get("captions_after"):
            notes.setdefault(r["item"], []).append("LM after: " + r["captions_after"][0])
    return {k: "; ".join(v) for k, v in notes.items()}


def _json(path: Path, data) -> Path:
    with atomic_open(path, "w") as fh:
        json.dump(data, fh, indent=1)
    return path


def write_report(result: dict, out: Path, command: str, model_name: str) -> list[Path]:
    out = ensure_writable_dir(Path(out))
    report = build_report(result, command, model_name)
    paths = [_json(out / "report.json", report)]
    with atomic_open(out / "report.md", "w") as fh:
        fh.write(markdown(report))
    paths.append(out / "report.md")
    shown = [m for m in result["config"]["methods"] if result["available"][m]]
    single, multi = result["single"], result["multi"]
    rows = result["config"]["figure_rows"]
    if rows and single:
        sheet = pairs_figure(single[:rows], shown, result["images"], figure_notes(result["records"]))
        with atomic_open(out / "pairs.png", "wb") as fh:
            sheet.save(fh, format="PNG")
        paths.append(out / "pairs.png")
    if rows and multi:
        sheet = sessions_figure(multi[: max(1, rows // 3)], shown, result["images"])
        with atomic_open(out / "multi-turn.png", "wb") as fh:
            sheet.save(fh, format="PNG")
        paths.append(out / "multi-turn.png")
    for protocol, items in (("single-turn", [[t] for t in single]), ("multi-turn", multi)):
        if items:
            paths.append(write_magicbrush(out / "magicbrush" / protocol, items))
            for m in shown:
                write_results(out / "results", result["images"], m, protocol, items)
    return paths
