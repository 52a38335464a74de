"""Skin edits of an editing report, split by how the instruction names the tone and what the oracle read.

    python scripts/editing_skin_direction.py out/v3-skin-role60/report.json

(the report of the run v3-skin-role60, whose command is in docs/results/editing/report.md, "Settings sweep", with
--out out/v3-skin-role60)

An absolute instruction ("give him dark skin") names its tone; a relative one ("give him darker skin") names only a
side, and the pair's gold target is one tone on that side drawn at random, so an edit can follow the instruction
and still miss the gold tone. Per method: absolute / relative, and whether the result reads the gold tone exactly,
another tone on the instructed side, or neither (docs/results/editing/report.md, "Expression, skin and role, on more pairs").
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from segakit.eval.editing_study.items import single_change_pairs
from segakit.world.pairs import relative_skin, skin_side


def verdict(old: str, new: str, read: str) -> str:
    """'exact', 'right side' (another tone on the side of ``old`` that ``new`` lies on) or 'wrong'."""
    if read == new:
        return "exact"
    return "right side" if read in skin_side(old, new) else "wrong"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="report.json of segakit eval editing (single-turn records)")
    args = parser.parse_args()
    report = json.loads(args.report.read_text())
    cfg = report["config"]
    pairs = {
        f"pair-{p.index:06d}": p
        for p in single_change_pairs(cfg["pairs"], cfg["seed"], tuple(cfg.get("attributes") or ()))
    }
    counts: Counter = Counter()
    for rec in report["records"]:
        pair = pairs.get(rec["item"])
        if (
            rec.get("protocol") != "single-turn"
            or pair is None
            or "skin" not in pair.changes
            or "skin" not in rec["read"]
        ):
            continue
        old, new = pair.changes["skin"]
        kind = "relative" if relative_skin(pair.instruction) else "absolute"
        counts[(rec["method"], kind, verdict(old, new, rec["read"]["skin"]))] += 1
    print("| method | instruction | exact | right side | wrong |\n|---|---|---|---|---|")
    for method in dict.fromkeys(m for m, _, _ in counts):
        for kind in ("absolute", "relative"):
            row = [counts[(method, kind, v)] for v in ("exact", "right side", "wrong")]
            if sum(row):
                print(f"| {method} | {kind} | " + " | ".join(map(str, row)) + " |")


if __name__ == "__main__":
    main()
