"""Edit targets of the faces world: an edit prompt and the oracle label that says it worked.

One definition per target. A removal is the addition's :meth:`Target.removal` (``NO_GLASSES`` steers away
from "glasses" and succeeds when the oracle no longer sees them); a prompt rewrite (the baseline of the SEGA
study) is :meth:`Target.rewrite`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from segakit.core.errors import UserError


@dataclass(frozen=True)
class Target:
    """Adding ``prompt`` succeeds when the oracle reads ``attribute == value``.

    Args:
        name: the name in reports ("glasses", "no smile").
        prompt: the SEGA edit concept, in the world's caption vocabulary.
        attribute, value: the oracle label that means "the attribute is there".
        phrase: what a prompt rewrite appends ("a face of a person, wearing glasses").
        remove: a removal: steer away from ``prompt``; success is the label no longer read.
        entails: attributes that change with this one by construction (a bald head has no hair colour and no
            bangs); isolation measurements do not count them as side effects.
    """

    name: str
    prompt: str
    attribute: str
    value: str | bool
    phrase: str = ""
    remove: bool = False
    entails: tuple[str, ...] = ()

    def present(self, labels: dict) -> bool:
        """Whether ``labels`` show the attribute (a hair colour is not there on a bald head)."""
        if self.attribute == "hair_color" and labels.get("hair_style") == "bald":
            return False
        return labels[self.attribute] == self.value

    def achieved(self, labels: dict) -> bool:
        """Whether ``labels`` show the edit's goal: the attribute for an addition, its absence for a removal."""
        return self.present(labels) != self.remove

    def removal(self) -> Target:
        """The same concept, removed."""
        return replace(self, name=f"no {self.name}", remove=True, phrase="")

    def rewrite(self, prompt: str) -> str:
        """The baseline: ``prompt`` rewritten to ask for the attribute ("a face of a person, wearing glasses").

        Gender targets replace the word "person" when there is one ("a face of a woman")."""
        if self.remove:
            raise ValueError(f"{self.name!r} is a removal; prompt rewrites are defined for additions only.")
        if self.attribute == "presentation" and "person" in prompt:
            return prompt.replace("person", str(self.value), 1)
        return f"{prompt}, {self.phrase or self.prompt}"


GLASSES = Target("glasses", "glasses", "glasses", True, phrase="wearing glasses")
SMILE = Target("smile", "smile", "expression", "smile", phrase="with a smile")
HAT = Target("hat", "hat", "hat", True, phrase="wearing a hat")
BEARD = Target("beard", "beard", "beard", True, phrase="with a beard")
BALD = Target("bald", "bald", "hair_style", "bald", phrase="with a bald head", entails=("hair_color", "bangs"))
MAKEUP = Target("makeup", "makeup", "makeup", True, phrase="wearing makeup")
GRAY_HAIR = Target("gray hair", "gray hair", "hair_color", "gray", phrase="with gray hair")
BANGS = Target("bangs", "bangs", "bangs", True, phrase="with bangs")
CURLS = Target("curls", "curly hair", "hair_style", "curly", phrase="with curly hair")
WOMAN = Target("woman", "woman", "presentation", "woman", phrase="a woman")
MAN = Target("man", "man", "presentation", "man", phrase="a man")

NO_GLASSES = GLASSES.removal()
NO_SMILE = SMILE.removal()
NO_BEARD = BEARD.removal()

# The attributes of the SEGA paper's face study, in the world's vocabulary ("the other gender" is
# WOMAN on men and MAN on women).
ADDITIONS = [GLASSES, SMILE, HAT, BEARD, BALD, MAKEUP, GRAY_HAIR, BANGS, CURLS]
GENDER = (WOMAN, MAN)
# The SEGA study's order (the paper's Table 1): gender in both directions, then the nine others.
STUDY_ADDITIONS = (WOMAN, MAN, GLASSES, SMILE, BALD, BEARD, HAT, CURLS, MAKEUP, GRAY_HAIR, BANGS)
REMOVALS = (NO_GLASSES, NO_SMILE, NO_BEARD)
# The paper's Table 2: four simultaneous edits.
COMBINATIONS = ((GLASSES, SMILE, CURLS, BEARD), (NO_SMILE, MAKEUP, HAT, WOMAN))


def other_gender(labels: dict) -> Target:
    return WOMAN if labels["presentation"] == "man" else MAN


def by_name(name: str) -> Target:
    """A study target by its report name ("glasses", "no smile")."""
    for t in (*STUDY_ADDITIONS, *REMOVALS):
        if t.name == name:
            return t
    known = ", ".join(t.name for t in (*STUDY_ADDITIONS, *REMOVALS))
    raise UserError(f"Target {name!r} is not one of: {known}.")
