"""Concept rows of one pipeline call, per group of images: several requests with different concepts in one batch.

segakit's addition, for a server that combines its clients' requests into one denoiser call (issue 34). Exact SEGA
pairs every concept with every image of a call. Here the images of a call are split into consecutive groups, each
with its own concepts and SEGA options (momentum, quantile, concept refresh); a concept's row is repeated only
for the images of its group, so a request's concepts cost rows for its own images alone:

    pipe(["a face", "a man", "a woman"], generator=gens, edit_groups=[
        EditGroup(1, [Edit("glasses")]), EditGroup(2, [Edit("beard", reverse=True), Edit("hat")], edit_refresh=2)])

Each group's guidance is computed by its own :class:`SemanticGuidance` over its own images (quantiles, momentum and
warm-up are per image anyway), so an image gets the guidance it gets in a call of its group alone; a group with no
concepts gets none. What differs is only the denoiser's batch, which changes the last bits of float32 results
(``docs/scale.md``: batch invariance). A call without groups is one group of every image, which makes exactly the
computation of exact SEGA (and of concept refresh) as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from segakit.core.errors import UserError
from segakit.sega.guidance import ConceptRefresh, Edit, QuantileOver, SemanticGuidance, refresh_interval


@dataclass(frozen=True)
class EditGroup:
    """The concepts of ``images`` consecutive images of a call, with their SEGA options (as the call's arguments)."""

    images: int
    edits: Sequence[Edit] = ()
    momentum_scale: float = 0.1
    momentum_beta: float = 0.4
    quantile_over: QuantileOver = "channel"
    edit_refresh: int | str = 1  # or "auto"


def check_groups(groups: Sequence[EditGroup], batch: int, edits, fair, sem_guidance, record_guidance: bool, directions,
                 *ip_adapter) -> None:  # fmt: skip
    """``edit_groups`` cover the call's ``batch`` images and replace ``edits``; what ties a call to one set of images
    is refused."""
    if sum(g.images for g in groups) != batch or any(g.images < 1 for g in groups):
        counts = [g.images for g in groups]
        raise UserError(f"edit_groups cover {counts} images; give each group 1 or more, {batch} in all.")
    given = {"edits": bool(edits), "fair": fair is not None, "sem_guidance": sem_guidance is not None,
             "record_guidance": record_guidance, "directions": bool(directions),
             "ip_adapter_image": any(x is not None for x in ip_adapter)}  # fmt: skip
    taken = [name for name, on in given.items() if on]
    if taken:
        raise UserError(
            f"edit_groups cannot be combined with {', '.join(taken)}; run such images in a call of their own."
        )


@dataclass
class _Part:
    images: slice
    sega: SemanticGuidance
    refresh: ConceptRefresh | None
    first: int  # index of its first concept among the call's concepts


class ConceptRows:
    """Which concept rows the denoiser computes at a step (:meth:`due`, each over :meth:`images`) and the
    guidance term from their estimates (:meth:`guidance`); ``edits`` are every group's concepts, in order."""

    def __init__(self, parts: list[_Part]) -> None:
        self.parts = parts
        self.edits = [e for p in parts for e in p.sega.edits]
        self._owner = [p for p in parts for _ in p.sega.edits]

    @classmethod
    def from_groups(cls, groups: Sequence[EditGroup], defaults: Edit, steps: int) -> ConceptRows:
        """One part per group (they cover the call's images: :func:`check_groups`), unset edit fields from ``defaults``,
        each group's ``edit_refresh`` ("auto" too) for a call of ``steps`` steps."""
        parts, start, first = [], 0, 0
        for g in groups:
            edits = [e.with_defaults(defaults) for e in g.edits]
            sega = SemanticGuidance(edits, g.momentum_scale, g.momentum_beta, g.quantile_over)
            k = refresh_interval(g.edit_refresh, steps)
            refresh = ConceptRefresh(k, starts=[e.warmup for e in edits]) if k != 1 else None
            parts.append(_Part(slice(start, start + g.images), sega, refresh, first))
            start, first = start + g.images, first + len(edits)
        return cls(parts)

    def group(self, index: int) -> SemanticGuidance:
        """The guidance object of group ``index`` (read after the call: which of its concepts never acted)."""
        return self.parts[index].sega

    def inactive(self) -> list[int]:
        """The concepts (indices into ``edits``) that never acted in their group."""
        return [p.first + k for p in self.parts for k in p.sega.inactive()]

    def due(self, step: int) -> list[int]:
        """The concepts whose denoiser estimate is computed at ``step``, group by group."""
        out = []
        for p in self.parts:
            alive = p.sega.alive(step)
            out.extend(p.first + k for k in (p.refresh.due(step, alive) if p.refresh is not None else alive))
        return out

    def images(self, concept: int) -> slice:
        """The images (of the call) that ``concept``'s rows go with."""
        return self._owner[concept].images

    def count(self, concept: int) -> int:
        """How many images ``concept``'s rows go with."""
        return self._owner[concept].images.stop - self._owner[concept].images.start

    def guidance(self, step: int, e0: torch.Tensor, estimates: Mapping[int, torch.Tensor]) -> torch.Tensor | None:
        """The guidance term for every image (rows of groups without guidance at this step are 0), or None."""
        if len(self.parts) == 1:
            return self._part(self.parts[0], step, e0, estimates)
        gamma = None
        for p in self.parts:
            g = self._part(p, step, e0[p.images], estimates)
            if g is not None:
                gamma = torch.zeros_like(e0) if gamma is None else gamma
                gamma[p.images] = g
        return gamma

    @staticmethod
    def _part(p: _Part, step: int, e0: torch.Tensor, estimates: Mapping[int, torch.Tensor]) -> torch.Tensor | None:
        n = len(p.sega.edits)
        local = {k - p.first: v for k, v in estimates.items() if p.first <= k < p.first + n}
        if p.refresh is not None:
            local = p.refresh.estimates(step, e0, local, p.sega.alive(step))
        return p.sega(step, e0, local)
