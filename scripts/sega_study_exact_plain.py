"""A SEGA study's scores against the exact plain images, read from its cache: for a default that refreshes only
calls with edits.

A study run with ``--guidance-refresh G`` makes its plain images with the same guidance refresh and scores each
edit against them (which seeds lack an attribute, what stayed unchanged). When guidance refresh is the default
only for calls with edits, a user's plain image is exact classifier-free guidance, so the edited image should also
be scored against that one. This script loads the study's units from its cache (it computes nothing of the study
again), makes the exact plain images (one 250-image unit, cached beside the study's), scores the same edited images
against them and writes ``OUT/exact-plain/report.json`` (an earlier one only with ``--overwrite``), which ``scripts/compare_sega_studies.py`` reads:

    python scripts/sega_study_exact_plain.py OUT --edit-refresh 3 --guidance-refresh 2 --sweep-seeds 4 --unique-seeds 8
    python scripts/compare_sega_studies.py docs/results/sega/report.json OUT/exact-plain/report.json

The options must be those the study ran with (the cache is keyed by them). Success of an addition is scored on the
seeds the study chose (where its own plain image lacked the attribute); isolation and the gender edit's success
read the exact plain image. Composition (SSIM, features) is not rescored: the cache keeps the edited images'
labels, not the images.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("study", type=Path, help="the study's --out folder (its cache/ must hold every unit)")
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--seeds", type=int, default=250)
    ap.add_argument("--edit-refresh", default="1")
    ap.add_argument("--guidance-refresh", type=int, default=1)
    ap.add_argument("--sweep-seeds", type=int, default=20)
    ap.add_argument("--unique-seeds", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--overwrite", action="store_true", help="replace an earlier OUT/exact-plain/report.json")
    args = ap.parse_args()

    import torch

    from segakit.core.atomic import atomic_open
    from segakit.core.errors import UserError
    from segakit.core.outputs import plan_folder
    from segakit.eval.sega_study.config import StudyConfig
    from segakit.eval.sega_study.run import Study
    from segakit.eval.sega_study.summary import json_ready, summarize
    from segakit.sega.pipeline import SegaPipeline
    from segakit.world.oracle import Oracle

    out = args.study / "exact-plain"
    try:  # the output policy: an earlier report is not replaced unasked
        plan_folder(out, "the rescored report's folder", ["report.json"], args.overwrite)
    except UserError as exc:
        ap.exit(2, f"{exc}\n")
    torch.set_num_threads(args.threads)
    refresh = int(args.edit_refresh) if args.edit_refresh.isdigit() else args.edit_refresh
    cfg = StudyConfig(seeds=args.seeds, edit_refresh=refresh, guidance_refresh=args.guidance_refresh,
                      sweep_seeds=args.sweep_seeds, unique_seeds=args.unique_seeds).check()  # fmt: skip
    pipe = SegaPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    oracle = Oracle.load()
    study = Study(pipe, oracle, cfg, args.study / "cache", model_name=args.model)
    study.plain = study.cache.load(study._plain_unit())
    if study.plain is None:
        raise SystemExit(f"{args.study / 'cache'} has no plain unit for these options; pass the study's own options.")
    units = study.plan()
    loaded = {u.name: study.cache.load(u) for u in units}
    missing = [name for name, arrays in loaded.items() if arrays is None]
    if missing:
        raise SystemExit(f"the study is not finished: {len(missing)} units missing ({', '.join(missing[:4])}, ...).")
    data = {name: {k: v for k, v in arrays.items() if not k.startswith("_")} for name, arrays in loaded.items()}

    exact = Study(pipe, oracle, replace(cfg, edit_refresh=1, guidance_refresh=1), args.study / "cache-exact-plain",
                  model_name=args.model)  # fmt: skip
    exact_plain = exact._run(exact._plain_unit())
    report = json_ready(summarize(cfg, exact_plain, data))
    report["model"] = {"name": args.model, "fingerprint": study.common["model"], "oracle": study.common["oracle"]}
    report["scored_against"] = "exact plain images (no concept or guidance refresh)"
    out.mkdir(exist_ok=True)
    with atomic_open(out / "report.json", "w") as fh:
        json.dump(report, fh, indent=2)
    agree = (study.plain["labels"] == exact_plain["labels"]).all(1).mean()
    print(f"plain images whose oracle labels all agree with the exact ones: {agree:.1%}")
    print(out / "report.json")


if __name__ == "__main__":
    main()
