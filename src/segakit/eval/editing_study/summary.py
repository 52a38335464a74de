"""The study's records summed up: per method and protocol, the means of every measure, success by attribute,
and per turn of the multi-turn protocol."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

MEASURES = ("success", "follows", "others_unchanged", "ssim_source", "l1", "l2", "clip_i", "clip_t", "seconds")


def _mean(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return round(float(np.mean(values)), 4) if values else None


def by_attribute(rows: list[dict], measure: str = "success") -> dict[str, list[int]]:
    """attribute -> [edits that score on ``measure`` ("success" or "follows"), edits] (single-change turns)."""
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        (attr,) = r["changes"]
        out[attr][0] += int(r.get(measure, r["success"]))
        out[attr][1] += 1
    return dict(sorted(out.items()))


def summarize(records: list[dict], methods: list[str], available: dict[str, bool]) -> dict:
    """``{method: {"available", "single": {...}, "multi": {"turns": [...], ...}}}``."""
    out: dict = {}
    for method in methods:
        if not available.get(method, True):
            out[method] = {"available": False}
            continue
        rows = [r for r in records if r["method"] == method]
        single = [r for r in rows if r["protocol"] == "single-turn"]
        multi = [r for r in rows if r["protocol"] == "multi-turn"]
        entry: dict = {"available": True, "single": {"edits": len(single), **{k: _mean(single, k) for k in MEASURES}}}
        entry["single"]["by_attribute"] = by_attribute(single)
        entry["single"]["follows_by_attribute"] = by_attribute(single, "follows")
        stages = sorted({k for r in single for k in r.get("stages", {})})
        if stages:  # OnTheFly's stages; "captions" is the language model's time when a caption writer ran
            entry["single"]["stage_seconds"] = {
                k: _mean([{k: r["stages"].get(k)} for r in single if "stages" in r], k) for k in stages
            }
        if multi:
            steps = sorted({r["turn"] for r in multi})
            entry["multi"] = {
                "edits": len(multi),
                "seconds": _mean(multi, "seconds"),
                "turns": [{"turn": k, **{m: _mean([r for r in multi if r["turn"] == k], m) for m in (*MEASURES[:-1], "all_so_far")}}
                          for k in steps],
            }  # fmt: skip
        out[method] = entry
    return out
