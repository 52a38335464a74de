"""Honest results for editing: an edit that changed (almost) nothing is said so, once, with what to try.

The measure is the share of the image's pixels that moved visibly: a pixel counts when one of its channels moved
by more than :data:`VISIBLE` (40 of 255) between the image as the pipeline edited it (fitted to the model's size)
and the result. An edit whose share is below :data:`FEW` (1%: 41 pixels of a 64 x 64 image) changed nothing a
person would see, or close to it: in the faces world's exact pairs (``segakit world pairs``, 200 of seed 0) a pair of
glasses moves at least 1.7% of the pixels, a hat 6.6%, a beard or bangs 0.7% and more, a changed expression
0.5% to 1% (so a small smile can be warned about; the sentence gives the share, to judge). ``segakit edit`` prints the sentence and records it in
the PNG (``warnings``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from segakit.core.errors import arg, render

VISIBLE = 40  # of 255: a channel change a person sees
FEW = 0.01  # share of the pixels: below it, the edit changed (almost) nothing


@dataclass(frozen=True)
class Change:
    """How much an edit changed an image: the share of pixels that moved visibly, and the mean change (of 255)."""

    share: float
    mean: float


def image_change(before: Image.Image, after: Image.Image) -> Change:
    """:class:`Change` from ``before`` to ``after`` (``before`` resized to ``after``'s size if they differ)."""
    if before.size != after.size:
        before = before.resize(after.size, Image.Resampling.LANCZOS)
    a = np.asarray(before.convert("RGB"), dtype=np.int16)
    b = np.asarray(after.convert("RGB"), dtype=np.int16)
    diff = np.abs(a - b)
    return Change(float((diff.max(axis=-1) > VISIBLE).mean()), float(diff.mean()))


def unchanged_warning(change: Change, method: str, style: str | None = None) -> str | None:
    """One sentence naming what to try when ``change`` is (almost) nothing, spelled for ``style`` (default: the
    current front end's: ``--threshold`` on the command line, ``threshold`` in the API); None otherwise."""
    if change.share >= FEW:
        return None
    if method == "sega":
        tips = (
            f"a lower {arg('threshold')} (e.g. 0.98), a larger {arg('guidance_scale')} (the concepts' scale, e.g. 8), "
            f"{arg('concepts')} with the words to add or remove, or {arg('method')} onthefly"
        )
    elif method == "flowedit":
        tips = (
            f"a larger {arg('guidance_scale')} (the target side's, e.g. 8), a lower {arg('skip')} (e.g. 0.1: more of "
            f"the schedule edits), {arg('captions_after')} with the caption you want, or {arg('method')} sega"
        )
    elif method == "invert":
        tips = (
            f"a larger {arg('guidance_scale')} (e.g. 3), a lower {arg('eta')}, {arg('captions_after')} with the caption "
            f"you want, or {arg('method')} flowedit"
        )
    else:
        tips = (
            f"a larger {arg('guidance_scale')} (e.g. 7), a lower {arg('mask')} (e.g. 0.95), {arg('skip')} 0, "
            f"{arg('captions_after')} with the caption you want, or {arg('method')} sega"
        )
    return render(
        f"the edit changed almost nothing ({change.share:.1%} of the pixels moved visibly, mean change "
        f"{change.mean:.1f}/255); try {tips}.",
        style,
    )
