"""Multi-turn edit sessions (MagicBrush's multi-turn protocol): one identity, several instructions in a row, each
changing one more attribute of the previous turn's face, with the exact render and a caption after every turn.

>>> from segakit.world.sessions import session_at
>>> s = session_at(0, 0, turns=3)
>>> s.instructions, s.changes, s.captions   # captions[0] is the source's; captions[k] the face after turn k
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from PIL import Image

from segakit.core.errors import UserError
from segakit.world.captions import plan_caption, realize
from segakit.world.dataset import rng_for
from segakit.world.pairs import (
    PRONOUNS,
    _new_values,
    _referent,
    editable,
    instruction_for,
)
from segakit.world.render import render
from segakit.world.schema import Face, sample_face

SESSION_STREAM = 2  # its own random stream: sessions do not repeat the single-turn pairs


@dataclass
class EditSession:
    index: int
    faces: list[Face]  # faces[0] the source, faces[k] after turn k
    instructions: list[str]
    changes: list[tuple[str, object, object]]  # per turn: (attribute, old, new)
    captions: list[str]  # one caption plan realised on every face, so they differ only where the faces do
    images: list[Image.Image]

    def record(self, files: list[str]) -> dict:
        return {"id": self.index, "files": files, "instructions": self.instructions, "captions": self.captions,
                "changes": [list(c) for c in self.changes], "labels": [f.labels() for f in self.faces]}  # fmt: skip


def session_at(seed: int, index: int, turns: int = 3) -> EditSession:
    """Session ``index`` of ``seed``: ``turns`` instructions, each changing an attribute no earlier turn changed."""
    if not 1 <= turns <= 6:
        raise UserError(f"A session of {turns} turns is outside 1..6.")
    rng = rng_for(seed, index, SESSION_STREAM)
    for _ in range(100):
        faces = [sample_face(rng)]
        ref = _referent(faces[0], rng)
        instructions, changes = [], []
        for _turn in range(turns):
            face = faces[-1]
            options = [a for a in editable(face) if a not in {c[0] for c in changes}]
            if not options:
                break
            attr = options[int(rng.integers(len(options)))]
            values = _new_values(face, attr)
            new = values[int(rng.integers(len(values)))]
            instructions.append(instruction_for(face, attr, new, rng, ref))
            changes.append((attr, getattr(face, attr), new))
            faces.append(dataclasses.replace(face, **{attr: new}))
            if attr == "presentation" and ref in PRONOUNS.values():  # "make her a man", then "give him ..."
                ref = dict(PRONOUNS[new])
        if len(changes) == turns:
            break
    else:  # pragma: no cover - every face has many editable attributes
        raise UserError(f"No face of seed {seed} could be edited {turns} times.")
    plan = plan_caption(faces[0], rng, force=[c[0] for c in changes], kind="full")
    return EditSession(
        index, faces, instructions, changes, [realize(plan, f) for f in faces], [render(f) for f in faces]
    )
