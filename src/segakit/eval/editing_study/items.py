"""What the study edits: single-change world pairs and multi-turn sessions, as turns of one shape."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image

from segakit.world.pairs import EditPair, instructed_values, pair_at
from segakit.world.sessions import EditSession, session_at


@dataclass
class Turn:
    """One instruction on one image, with its gold answer. ``step`` counts from 1 within a session."""

    item: str  # "pair-000004" | "session-000001"
    step: int
    instruction: str
    source_caption: str  # gold caption of the turn's input (the session's previous gold face)
    target_caption: str
    changes: dict[str, object]  # attribute -> the instructed new value (this turn)
    changed_so_far: dict[str, object]  # every instructed value up to this turn
    source_image: Image.Image  # the item's original source (turn 0)
    input_image: Image.Image  # the gold input of this turn
    target_image: Image.Image
    instructed: dict[str, tuple] = field(default_factory=dict)  # attribute -> every value that follows the instruction


def single_change_pairs(n: int, seed: int, attributes: Sequence[str] = ()) -> list[EditPair]:
    """The first ``n`` pairs of ``seed`` that change one attribute (in index order), of ``attributes`` only when
    given (the same pairs as without it, those that change another attribute left out)."""
    found, index = [], 0
    while len(found) < n:
        pair = pair_at(seed, index)
        index += 1
        if len(pair.changes) == 1 and (not attributes or next(iter(pair.changes)) in attributes):
            found.append(pair)
    return found


def pair_turn(pair: EditPair) -> Turn:
    changes = {a: new for a, (_old, new) in pair.changes.items()}
    instructed = {a: instructed_values(a, old, new, pair.instruction) for a, (old, new) in pair.changes.items()}
    return Turn(f"pair-{pair.index:06d}", 1, pair.instruction, pair.source_caption, pair.target_caption, changes, changes,
                pair.source_image, pair.source_image, pair.target_image, instructed)  # fmt: skip


def session_turns(session: EditSession) -> list[Turn]:
    turns, so_far = [], {}
    for k, (attr, old, new) in enumerate(session.changes):
        so_far = {**so_far, attr: new}
        turns.append(Turn(f"session-{session.index:06d}", k + 1, session.instructions[k], session.captions[k],
                          session.captions[k + 1], {attr: new}, dict(so_far), session.images[0], session.images[k],
                          session.images[k + 1], {attr: instructed_values(attr, old, new, session.instructions[k])}))  # fmt: skip
    return turns


def sessions(n: int, seed: int, turns: int) -> list[EditSession]:
    return [session_at(seed, i, turns) for i in range(n)]


def image_of(u8) -> Image.Image:
    """(3, H, W) uint8 -> PIL."""
    return Image.fromarray(u8.transpose(1, 2, 0).copy())
