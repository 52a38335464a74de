"""Edit targets of the faces world: an edit prompt and the oracle label that says it worked."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """Adding ``prompt`` succeeds when the oracle reads ``attribute == value``."""

    name: str
    prompt: str
    attribute: str
    value: str | bool

    def present(self, labels: dict) -> bool:
        return labels[self.attribute] == self.value


GLASSES = Target("glasses", "glasses", "glasses", True)
SMILE = Target("smile", "smile", "expression", "smile")
HAT = Target("hat", "hat", "hat", True)
BEARD = Target("beard", "beard", "beard", True)
BALD = Target("bald", "bald", "hair_style", "bald")
MAKEUP = Target("makeup", "makeup", "makeup", True)
GRAY_HAIR = Target("gray hair", "gray hair", "hair_color", "gray")
BANGS = Target("bangs", "bangs", "bangs", True)
CURLS = Target("curls", "curly hair", "hair_style", "curly")
WOMAN = Target("woman", "woman", "presentation", "woman")
MAN = Target("man", "man", "presentation", "man")

# The attributes of the SEGA paper's face study, in the world's vocabulary ("the other gender" is
# WOMAN on men and MAN on women).
ADDITIONS = [GLASSES, SMILE, HAT, BEARD, BALD, MAKEUP, GRAY_HAIR, BANGS, CURLS]
GENDER = (WOMAN, MAN)


def other_gender(labels: dict) -> Target:
    return WOMAN if labels["presentation"] == "man" else MAN
