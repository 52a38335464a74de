"""The edit endpoint's and the Edit tab's place: editing real images is not wired into the server yet.

When ``segakit.editing`` ships its pipeline (issue 17: caption, invert, written captions, edit), wire it here:
``editing_available`` returns True and ``edit`` runs the edit as a worker job (like ``Service.submit``),
returning the result PNG with the instruction, the source caption and the written captions in its parameters.
"""

from __future__ import annotations

EDITING_MISSING = ("Editing real images is not available in this segakit yet (it is being built); "
                   "generation with concepts works: use /api/generate or the Generate tab.")  # fmt: skip


class EditingUnavailable(Exception):
    """The server has no editing pipeline; the API answers 501 with :data:`EDITING_MISSING`."""

    def __init__(self) -> None:
        super().__init__(EDITING_MISSING)


def editing_available() -> bool:
    return False


def edit(service, image, instruction: str, method: str, captions: int, seed: int, steps: int | None, guidance: float | None):
    """Edit ``image`` following ``instruction``; until editing is wired this raises :class:`EditingUnavailable`."""
    raise EditingUnavailable()
