"""Two SEGA study reports side by side, with the issue's bars for an approximation of exact SEGA.

    python scripts/compare_sega_studies.py docs/results/sega/report.json OTHER/report.json

Prints a markdown table: each addition's and removal's success, the additions' isolation and both four-edit
combinations ("all 4"), in the first report (the reference, e.g. exact SEGA) and the second, their difference in
points, and whether it is within the bar (1 point for additions, removals and isolation, 2 for the combinations;
a gain always is). Both reports must come from the same seeds, prompt, model and oracle; the script refuses
otherwise.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def rows(report: dict) -> dict[str, tuple[float, float]]:
    """name -> (value in %, bar in points)."""
    r = report["results"]
    out = {}
    for name, a in r["additions"].items():
        out[f"add {name}: success"] = (100 * a["sega"]["success"]["rate"], 1.0)
    out["additions: isolation (mean)"] = (100 * r["additions_mean"]["sega"]["isolation"], 1.0)
    for name, a in r["removals"].items():
        out[f"remove {name.removeprefix('no ')}: success"] = (100 * a["sega"]["success"]["rate"], 1.0)
    for c in r["combinations"]:
        out[f"all 4 of {' + '.join(c['edits'])}"] = (100 * c["at_least"]["4"], 2.0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reference", type=Path)
    ap.add_argument("other", type=Path)
    args = ap.parse_args()
    ref, other = (json.loads(p.read_text()) for p in (args.reference, args.other))
    for key in ("seeds", "first_seed", "prompt", "steps", "guidance", "scale", "threshold", "warmup"):
        if ref["config"].get(key) != other["config"].get(key):
            raise SystemExit(
                f"the reports differ in {key}: {ref['config'].get(key)!r} and {other['config'].get(key)!r}"
            )
    if ref["model"] != other["model"]:
        raise SystemExit(f"the reports measured different weights: {ref['model']} and {other['model']}")
    a, b = rows(ref), rows(other)
    print(f"| measure | {args.reference.parent.name} | {args.other.parent.name} | difference | within the bar |")
    print("|---|---:|---:|---:|---|")
    failed = 0
    for name, (va, bar) in a.items():
        vb = b[name][0]
        ok = vb - va >= -bar - 1e-9
        failed += not ok
        print(f"| {name} | {va:.1f}% | {vb:.1f}% | {vb - va:+.1f} | {'yes' if ok else f'no (bar {bar:g})'} |")
    print(f"\n{len(a) - failed} of {len(a)} within the bars.")


if __name__ == "__main__":
    main()
