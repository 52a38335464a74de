"""Honest results for SEGA: a concept that never acted is said so, once, with what to try.

:class:`segakit.sega.guidance.SemanticGuidance` sums how much each concept's guidance moved the noise estimate
(segakit's addition: ``effect``); a concept whose sum stays below a thousandth of the estimate's own size over the
run changed nothing (a scale or weight of 0, a concept whose estimate is the unconditional one, a schedule that
never reaches it). The pipeline keeps the run's guidance object as ``last_guidance``; :func:`idle_concepts` reads
it after the call, :func:`idle_warning` is the sentence, recorded in the PNG (``warnings``) and printed by the CLI.
"""

from __future__ import annotations


def idle_concepts(pipe) -> list[str]:
    """The concepts (``+glasses``, ``-beard``) of ``pipe``'s last call that never acted; [] without SEGA."""
    return idle_in(getattr(pipe, "last_guidance", None))


def idle_in(guidance) -> list[str]:
    """The concepts of ``guidance`` (a SemanticGuidance, or one group's of a call with edit groups) that never acted."""
    if guidance is None or not guidance.edits:
        return []
    return [f"{'-' if guidance.edits[k].reverse else '+'}{guidance.edits[k].prompt}" for k in guidance.inactive()]


def idle_warning(concepts: list[str]) -> str | None:
    """One sentence for concepts that never acted, naming what to try; None when every concept acted."""
    if not concepts:
        return None
    names = ", ".join(repr(c) for c in concepts)
    verb = "concept " + names + " never acted" if len(concepts) == 1 else "concepts " + names + " never acted"
    return (
        f"{verb} (its guidance stayed below 0.1% of the noise estimate), so the image is as without it; "
        "try a larger scale (s=), a lower threshold (t=), an earlier warm-up (w=), or words the model knows."
    )
