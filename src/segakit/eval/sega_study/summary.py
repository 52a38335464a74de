"""The SEGA study's numbers from its units' arrays: pure bookkeeping, no model."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict

import numpy as np

from segakit.eval.isolation import isolation
from segakit.eval.sega_study.config import PAPER, StudyConfig
from segakit.eval.sega_study.measures import (
    ATTRS,
    COMPOSITION,
    at_least,
    decode,
    monotonicity,
    rate,
)
from segakit.eval.targets import (
    COMBINATIONS,
    GLASSES,
    REMOVALS,
    STUDY_ADDITIONS,
    Target,
)
from segakit.world.schema import ATTRIBUTES


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
    ok = np.array(
        [target.achieved(a) and target.achieved(b) for a, b in zip(decode(sega["labels"]), decode(rewrite["labels"]))],
        dtype=bool,
    )
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
        ok = [
            woman.achieved(e) if labels[i]["presentation"] == "man" else man.achieved(e)
            for i, e in zip(both["idx"], edited)
        ]
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

    results["monotonicity"] = {
        t.name: monotonicity(cfg.sweep, data[f"sweep-{t.name}"]["p"]) for t in (*STUDY_ADDITIONS, *REMOVALS)
    }
    mono = results["monotonicity"].values()
    results["monotonicity_mean"] = {
        k: _mean([m[k] for m in mono]) for k in ("spearman_mean", "share_increasing", "spearman_of_mean")
    }

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


def json_ready(obj):
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    return obj
