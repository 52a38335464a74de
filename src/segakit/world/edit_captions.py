"""Caption sets of an edit: an instruction, N captions of the face before it and N after, as a caption writer
should write them (the training and test data of the embedded model's caption writer, issue 17).

The writer sees only the instruction and the image's caption ("Caption 1"), so what it writes must follow from
those two; the sets here are built that way:

* **caption 1** is a full world caption of the source face: with ``p_gold`` the edit pair's own kind (it names
  the changed attributes), otherwise the kind a captioner is trained on (at least ``min_mentions`` attributes,
  which may or may not include the changed ones);
* **before captions 2..N** say again, in other words (other synonyms, template, order), a random subset of what
  caption 1 says, plus the changed attributes' old values where the input tells them: stated in caption 1, or a
  yes/no attribute the instruction adds or removes. An old value nobody said ("dye her hair red" of a caption
  silent on hair) is left out rather than guessed;
* **after caption i** is before caption i's wording on the edited face, with every changed attribute stated.

So the after captions differ from the before captions exactly by the change, and state nothing about the face
that caption 1 and the instruction do not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from segakit.world.captions import TEMPLATES, CaptionPlan, plan_caption, realize
from segakit.world.pairs import pair_change_at
from segakit.world.schema import ATTRIBUTES, BINARY, Face

WRITER_STREAM = 8  # the random stream of a seed that the caption writer's training data uses
P_GOLD = 0.3
P_KEEP = 0.7


def rich_caption_plan(face: Face, rng: np.random.Generator, min_mentions: int = 3) -> CaptionPlan:
    """A full caption plan naming at least ``min_mentions`` attributes (chosen at random, then the planner's own)."""
    names = list(ATTRIBUTES)
    force = [names[i] for i in rng.choice(len(names), size=min_mentions, replace=False)] if min_mentions else []
    return plan_caption(face, rng, force=force, kind="full")


@dataclass
class EditCaptions:
    instruction: str
    source: Face
    target: Face
    changes: dict[str, tuple]  # attribute -> (old, new)
    before: list[str]  # before[0] is the image's caption ("Caption 1")
    after: list[str]  # after[i]: before[i]'s wording on the edited face


def _insert(attrs: list[str], extra: Sequence[str], rng: np.random.Generator) -> list[str]:
    out = list(attrs)
    for a in extra:
        if a not in out:
            out.insert(int(rng.integers(len(out) + 1)), a)
    return out


def _plan(attrs: list[str], rng: np.random.Generator) -> CaptionPlan:
    u = {a: rng.random(4) for a in ATTRIBUTES}
    return CaptionPlan("full", attrs, u, int(rng.integers(len(TEMPLATES))), float(rng.random()), False)


def edit_captions_at(seed: int, index: int, n: int, stream: int = WRITER_STREAM, p_gold: float = P_GOLD,
                     min_mentions: int = 4, p_keep: float = P_KEEP) -> EditCaptions:  # fmt: skip
    """Caption sets of edit ``index`` of ``seed`` (an edit pair's faces and instruction, own random stream)."""
    source, target, instruction, changes, rng = pair_change_at(seed, index, stream=stream)
    changed = list(changes)
    if rng.random() < p_gold:
        first = plan_caption(source, rng, force=changed, kind="full")
    else:
        first = rich_caption_plan(source, rng, min_mentions)
    known = set(first.attrs) | {a for a in changed if a in BINARY}
    hidden = [a for a in changed if a not in known]  # old values the writer cannot know
    first_after = CaptionPlan(
        "full", _insert(first.attrs, changed, rng), first.u, first.template, first.noun_u, first.background
    )
    before, after = [realize(first, source)], [realize(first_after, target)]
    for _ in range(n - 1):
        for _attempt in range(5):  # a new wording, not one already written
            attrs = [a for a in first.attrs if a not in changes and rng.random() < p_keep]
            attrs = _insert(attrs, changed, rng)
            attrs = [attrs[i] for i in rng.permutation(len(attrs))]
            plan = _plan(attrs, rng)
            b = realize(
                CaptionPlan("full", [a for a in attrs if a not in hidden], plan.u, plan.template, plan.noun_u), source
            )
            a = realize(plan, target)
            if b not in before and a not in after:
                break
        before.append(b)
        after.append(a)
    return EditCaptions(instruction, source, target, changes, before, after)
