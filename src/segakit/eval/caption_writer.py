"""How well a caption writer turns an instruction into captions, read by the world's caption parser (issue 17).

Held-out edits: the faces and instructions of ``segakit world pairs`` (seed 0 by default: the pairs the editing
benchmark uses; the writer trains on another random stream). Caption 1 is a world caption of the source face
(``segakit.world.edit_captions``) or, with ``--source captioner``, what the shipped captioner says of the render.
The writer writes N captions per side (seeded). Reported:

* **parsed**: share of edits whose output parsed to N captions per side on the first try; mean tries;
* **after: change**: share of after-captions in which the parser reads every instructed attribute at its new value;
* **after: rest kept**: share of after-captions in which every other attribute stated is the source face's value;
* **after: both**: the two together (the issue's measure); **before: right**: before-captions that state only the
  source face's values;
* **after: follows** and **both (follows)**: the same, counting for the change every value that follows the instruction
  (``segakit.world.pairs.instructed_values``: a relative skin instruction, "give him darker skin", names a side, and
  the pair's gold tone is one tone on it drawn at random, which no writer can know);
* **seconds per write** (the language model step's wall time).

    python -m segakit.eval.caption_writer                          # the shipped writer, 200 edits, N = 3
    python -m segakit.eval.caption_writer --model runs/writer/model --n 100 --source captioner
    python -m segakit.eval.caption_writer --temperature 1                # sampling at another temperature
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from segakit.world.captions import parse_caption
from segakit.world.dataset import PAIR_STREAM
from segakit.world.edit_captions import edit_captions_at
from segakit.world.pairs import instructed_values
from segakit.world.schema import Face

SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "caption_writer"


def judge_after(
    caption: str, source: Face, changes: dict[str, tuple], instruction: str | None = None
) -> tuple[bool, bool]:
    """(states every change's new value, states nothing else against the source face). With ``instruction``, a change
    counts as stated when the caption names one value that follows it (``instructed_values``), not only the gold one."""
    stated = parse_caption(caption)
    labels = source.labels()
    if instruction is None:
        change = all(stated.get(a) == {new} for a, (_, new) in changes.items())
    else:
        allowed = {a: instructed_values(a, old, new, instruction) for a, (old, new) in changes.items()}
        change = all(len(stated.get(a, ())) == 1 and next(iter(stated[a])) in allowed[a] for a in changes)
    rest = all(values == {labels[a]} for a, values in stated.items() if a not in changes)
    return change, rest


def judge_before(caption: str, source: Face) -> bool:
    labels = source.labels()
    return all(values == {labels[a]} for a, values in parse_caption(caption).items())


@dataclass
class WriterReport:
    n: int
    captions: int
    first_try: int = 0
    complete: int = 0
    tries: int = 0
    failed: int = 0  # no parse at all after the retries
    after: int = 0
    after_change: int = 0
    after_rest: int = 0
    after_both: int = 0
    after_follows: int = 0
    after_both_follows: int = 0
    before: int = 0
    before_right: int = 0
    seconds: float = 0.0
    by_attribute: dict[str, list[int]] = field(default_factory=dict)  # attribute -> [after captions, change, follows]
    examples: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        share = lambda a, b: round(a / b, 4) if b else None
        return {
            "edits": self.n, "captions_per_side": self.captions,
            "parsed_first_try": share(self.first_try, self.n), "complete": share(self.complete, self.n),
            "mean_tries": share(self.tries, self.n - self.failed), "failed": self.failed,
            "after_change": share(self.after_change, self.after), "after_rest_kept": share(self.after_rest, self.after),
            "after_both": share(self.after_both, self.after), "after_follows": share(self.after_follows, self.after),
            "after_both_follows": share(self.after_both_follows, self.after), "before_right": share(self.before_right, self.before),
            "seconds_per_write": share(self.seconds, self.n),
            "change_by_attribute": {a: share(v[1], v[0]) for a, v in sorted(self.by_attribute.items())},
            "follows_by_attribute": {a: share(v[2], v[0]) for a, v in sorted(self.by_attribute.items())},
        }  # fmt: skip


def measure(model: str | Path | None = None, n: int = 200, captions: int = 3, seed: int = 0, write_seed: int = 0,
            source: str = "world", writer=None, captioner=None) -> WriterReport:  # fmt: skip
    """Write captions for ``n`` held-out edits (``source``: "world" captions or the shipped "captioner")."""
    from segakit.core.errors import UserError
    from segakit.editing.caption_writer import CaptionWriter

    writer = writer or CaptionWriter.from_pretrained(model or SHIPPED)
    if source == "captioner" and captioner is None:
        from segakit.editing.captioner import EMBEDDED_CAPTIONER, Captioner

        captioner = Captioner.from_pretrained(EMBEDDED_CAPTIONER)
    report = WriterReport(n, captions)
    for i in range(n):
        ec = edit_captions_at(seed, i, captions, stream=PAIR_STREAM)
        first = ec.before[0]
        if source == "captioner":
            from segakit.world.render import render

            first = captioner(render(ec.source))
        t0 = time.perf_counter()
        try:
            written = writer.write(ec.instruction, first, n=captions, seed=write_seed + i)
        except UserError:
            report.failed += 1
            report.seconds += time.perf_counter() - t0
            continue
        report.seconds += time.perf_counter() - t0
        report.tries += written.tries
        report.complete += written.complete
        report.first_try += written.complete and written.tries == 1
        for c in written.after:
            change, rest = judge_after(c, ec.source, ec.changes)
            report.after += 1
            report.after_change += change
            report.after_rest += rest
            report.after_both += change and rest
            follows, _ = judge_after(c, ec.source, ec.changes, ec.instruction)
            report.after_follows += follows
            report.after_both_follows += follows and rest
            for a in ec.changes:
                counts = report.by_attribute.setdefault(a, [0, 0, 0])
                counts[0] += 1
                counts[1] += change
                counts[2] += follows
        for c in written.before[1:]:
            report.before += 1
            report.before_right += judge_before(c, ec.source)
        if len(report.examples) < 6:
            report.examples.append(
                {"instruction": ec.instruction, "caption_1": first, "before": written.before, "after": written.after}
            )
    return report


def format_report(r: WriterReport) -> str:
    s = r.summary()
    pct = lambda v: "-" if v is None else f"{v * 100:.1f}%"
    lines = [
        f"caption writer on {s['edits']} held-out edits, {s['captions_per_side']} captions per side:",
        f"  parsed on the first try {pct(s['parsed_first_try'])}, complete {pct(s['complete'])}, mean tries {s['mean_tries']}, failed {s['failed']}",
        f"  after-captions: change stated {pct(s['after_change'])}, rest kept {pct(s['after_rest_kept'])}, both {pct(s['after_both'])}",
        f"  counting every value that follows the instruction: change {pct(s['after_follows'])}, both {pct(s['after_both_follows'])}",
        f"  before-captions (2..N) right {pct(s['before_right'])}",
        f"  {s['seconds_per_write']} s per write",
        "  change stated, by attribute: " + ", ".join(f"{a} {pct(v)}" for a, v in s["change_by_attribute"].items()),
        "  follows the instruction, by attribute: "
        + ", ".join(f"{a} {pct(v)}" for a, v in s["follows_by_attribute"].items()),
    ]
    for e in r.examples[:2]:
        lines.append(f"  e.g. {e['instruction']!r}: {e['before']} -> {e['after']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a causal LM folder (default: the shipped caption writer)")
    parser.add_argument("--n", type=int, default=200, help="held-out edits")
    parser.add_argument("--captions", type=int, default=3, help="captions per side")
    parser.add_argument("--seed", type=int, default=0, help="world seed of the edit pairs")
    parser.add_argument("--write-seed", type=int, default=0, help="the writer's seed of edit 0 (edit i: + i)")
    parser.add_argument("--source", choices=["world", "captioner"], default="world", help="where caption 1 comes from")
    parser.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="sampling temperature (default: the model folder's generation_config.json, else 1)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="also write the summary here")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from segakit.editing.caption_writer import CaptionWriter

    writer = CaptionWriter.from_pretrained(args.model or SHIPPED, temperature=args.temperature)
    report = measure(args.model, args.n, args.captions, args.seed, args.write_seed, args.source, writer=writer)
    print(format_report(report))
    if args.json:
        from segakit.core.atomic import atomic_open

        with atomic_open(Path(args.json), "w") as fh:
            fh.write(json.dumps({"model": str(args.model or SHIPPED), "source": args.source, **report.summary(),
                                 "examples": report.examples}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
