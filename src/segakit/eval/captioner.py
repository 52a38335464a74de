"""How right a captioner is, read by the world's caption parser on held-out renders (issue 17).

Each held-out render (world samples of ``seed``, never trained on) is captioned; ``parse_caption`` reads back the
attribute values the caption states. A mention is *right* when it states exactly the face's value (``"without
glasses"`` on a face without glasses). Reported: the share of mentions that are right, mentions per caption,
and both per attribute; also the share of captions the parser reads nothing from, and the seconds per caption.

    python -m segakit.eval.captioner                           # the shipped captioner, 500 renders of seed 1
    python -m segakit.eval.captioner --model runs/captioner/model --n 200 --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from segakit.world.captions import parse_caption
from segakit.world.dataset import samples
from segakit.world.schema import ATTRIBUTES, Face

SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "captioner"
EVAL_SEED = 1  # world samples of seed 1, stream 0: the captioner trains on seed 0 of its own stream


def judge(caption: str, face: Face) -> dict[str, bool]:
    """``{attribute: right?}`` for every attribute the caption states."""
    labels = face.labels()
    return {a: values == {labels[a]} for a, values in parse_caption(caption).items()}


@dataclass
class CaptionerReport:
    n: int
    mentions: dict[str, int] = field(default_factory=lambda: {a: 0 for a in ATTRIBUTES})
    right: dict[str, int] = field(default_factory=lambda: {a: 0 for a in ATTRIBUTES})
    silent: int = 0  # captions the parser reads no attribute from
    seconds: float = 0.0
    examples: list[dict] = field(default_factory=list)

    def add(self, caption: str, face: Face) -> None:
        verdicts = judge(caption, face)
        self.silent += not verdicts
        for a, ok in verdicts.items():
            self.mentions[a] += 1
            self.right[a] += ok
        if len(self.examples) < 8:
            self.examples.append({"caption": caption, "labels": face.labels(), "right": verdicts})

    @property
    def precision(self) -> float:
        total = sum(self.mentions.values())
        return sum(self.right.values()) / total if total else 0.0

    @property
    def mentions_per_caption(self) -> float:
        return sum(self.mentions.values()) / self.n if self.n else 0.0

    def summary(self) -> dict:
        return {
            "n": self.n,
            "right_share": round(self.precision, 4),
            "mentions_per_caption": round(self.mentions_per_caption, 3),
            "silent_share": round(self.silent / self.n, 4) if self.n else 0.0,
            "seconds_per_caption": round(self.seconds / self.n, 4) if self.n else 0.0,
            "per_attribute": {a: {"mentions": m, "right_share": round(self.right[a] / m, 4) if m else None}
                              for a, m in self.mentions.items()},
        }  # fmt: skip


def measure(model: str | Path | None = None, n: int = 500, seed: int = EVAL_SEED, captioner=None) -> CaptionerReport:
    """Caption ``n`` held-out renders with ``captioner`` (or the one loaded from ``model``; default: the shipped one)."""
    from segakit.editing.captioner import Captioner

    captioner = captioner or Captioner.from_pretrained(model or SHIPPED)
    report = CaptionerReport(n)
    for s in samples(n, seed):
        t0 = time.perf_counter()
        text = captioner(s.image)
        report.seconds += time.perf_counter() - t0
        report.add(text, s.face)
    return report


def format_report(report: CaptionerReport) -> str:
    s = report.summary()
    lines = [(f"captioner on {s['n']} held-out renders: {s['right_share'] * 100:.1f}% of the attributes it mentions are right, "
              f"{s['mentions_per_caption']:.2f} mentions per caption, {s['silent_share'] * 100:.1f}% captions state none, "
              f"{s['seconds_per_caption'] * 1000:.0f} ms per caption")]  # fmt: skip
    for a, v in s["per_attribute"].items():
        share = "-" if v["right_share"] is None else f"{v['right_share'] * 100:.1f}%"
        lines.append(f"  {a:<13} mentions {v['mentions']:5d}  right {share}")
    lines += [f"  e.g. {e['caption']!r}" for e in report.examples[:3]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a BLIP captioner folder (default: the shipped one)")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--seed", type=int, default=EVAL_SEED)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="also write the summary here")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    report = measure(args.model, args.n, args.seed)
    print(format_report(report))
    if args.json:
        from segakit.core.atomic import atomic_open

        with atomic_open(Path(args.json), "w") as fh:
            fh.write(json.dumps({"model": str(args.model or SHIPPED), "seed": args.seed, **report.summary()}, indent=1))


if __name__ == "__main__":
    main()
