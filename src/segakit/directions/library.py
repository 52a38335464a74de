"""A library of directions, one per ``attribute=value``, and the three uses the paper makes of them.

- **fair** generation: for each image, one value of the attribute is drawn (equal shares, or the shares given)
  and that value's direction is added, so that a biased prompt ("a doctor") comes out balanced.
  :class:`FairChoice` holds the draws, so the PNG can record them and ``--from-png`` redraws nothing.
- **safe** generation: the anti-concept direction (``horror=false``, learned from the neutral prompt with the
  concept as the negative prompt) is always on.
- **enhance** (responsible text-enhancing generation): for every ``attribute=value`` the prompt names (read with
  the faces world's caption parser) that has a direction, that direction is added.

A library is a folder with ``library.json`` (``{"directions": {"presentation=woman": "presentation-woman.safetensors",
...}, "model": ..., "strength": 0.5, "strengths": {"presentation=woman": 0.75}}``) and the direction files: ``strength`` is
the default strength of its directions, ``strengths`` (optional) the strength of those that need another. The embedded model's is shipped under
``segakit/assets/directions``, the embedded flow model's under ``segakit/assets/directions-flow``
(:func:`default_library_path`); ``python -m segakit.train.directions [--model embedded-flow]`` relearns them.

``recipes`` (optional, written by ``python -m segakit.train.calibrate_directions``) says, for a value whose own
direction does not draw it, what fair generation adds instead when that value is drawn: a list of ``[name,
strength]`` (``{"skin=medium-light": [["skin=medium", 0.5]]}``), chosen by reading the model's own images of each
candidate. With them, ``draws`` (optional, the same command) gives the shares to draw the values at by default
(``{"skin": {"light": 0.1, ...}}``) so that the shares the images show come out even. An explicit strength
(``--library-strength``) skips both: every value's own direction at it, equal shares unless given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from segakit.core.draws import draw_values, parse_shares
from segakit.core.errors import UserError, arg, closest
from segakit.directions.direction import AppliedDirection, Direction

SAFE = "horror=false"


def embedded_library_path() -> Path:
    return Path(__file__).resolve().parents[1] / "assets" / "directions"


def embedded_flow_library_path() -> Path:
    """The embedded flow model's library (its transformer's directions; the U-Net model's do not apply to it)."""
    return Path(__file__).resolve().parents[1] / "assets" / "directions-flow"


def default_library_path(model: str | Path | None) -> Path | None:
    """The library shipped for ``model`` ("embedded", "embedded-flow" or their folders); None for other models, which
    need a library learned on them (``python -m segakit.train.directions --model ... --out DIR``)."""
    from segakit.core.embedded_flow import EMBEDDED_FLOW
    from segakit.core.loading import EMBEDDED, model_key

    if model is None:
        return None
    return {EMBEDDED: embedded_library_path(), EMBEDDED_FLOW: embedded_flow_library_path()}.get(model_key(model))


def library_folder(library: str | Path | None, model: str | Path, needs: str) -> Path:
    """``library`` when given, else the one shipped for ``model``; for a model without one, a UserError saying what
    ``needs`` it (e.g. "--fair, --safe and --enhance need") and how to learn one."""
    folder = Path(library) if library is not None else default_library_path(model)
    if folder is None:
        raise UserError(f"{needs} a direction library for model {str(model)!r}, and only the embedded models ship one; "
                        f"learn one with python -m segakit.train.directions --model {model} --out DIR and pass --library DIR.")  # fmt: skip
    return folder


def key(attribute: str, value: object) -> str:
    """``attribute=value`` with booleans as JSON writes them (``glasses=true``)."""
    return f"{attribute}={str(value).lower() if isinstance(value, bool) else value}"


@dataclass
class FairChoice:
    """One drawn value per image and what it adds: an h-space offset whose rows differ by image."""

    attribute: str
    choices: list[str]  # the value drawn for each image
    recipes: dict[str, list[tuple[Direction, float]]]  # per value: the directions added, each at its strength

    def offset(self, batch: int, shape: tuple[int, ...], device, dtype) -> torch.Tensor:
        if batch != len(self.choices):
            raise UserError(f"Fair generation drew values for {len(self.choices)} images; this call makes {batch}.")
        rows = [sum(s * d.resized(shape) for d, s in self.recipes[c]) for c in self.choices]
        return torch.stack(rows).to(device=device, dtype=dtype)


@dataclass
class Library:
    folder: Path
    files: dict[str, str]
    meta: dict = field(default_factory=dict)
    _cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, folder: str | Path | None = None) -> Library:
        folder = Path(folder) if folder is not None else embedded_library_path()
        index = folder / "library.json"
        if not index.is_file():
            raise UserError(
                f"{str(folder)!r} is not a direction library (no library.json); learn one with python -m segakit.train.directions."
            )
        data = json.loads(index.read_text())
        return cls(folder, dict(data.get("directions", {})), {k: v for k, v in data.items() if k != "directions"})

    @property
    def strength(self) -> float:
        """The strength the library's directions are used at unless one is given (library.json's ``strength``)."""
        return float(self.meta.get("strength", 1.0))

    def strength_of(self, name: str) -> float:
        """The strength direction ``name`` is used at unless one is given (``strengths``, else ``strength``)."""
        return float(self.meta.get("strengths", {}).get(name, self.strength))

    def recipe(self, name: str) -> list[tuple[str, float]]:
        """What fair generation adds when ``name``'s value is drawn: ``recipes`` where calibration set one, else
        the direction itself at its strength."""
        given = self.meta.get("recipes", {}).get(name)
        if given is None:
            return [(name, self.strength_of(name))]
        return [(str(n), float(st)) for n, st in given]

    def draw_shares(self, attribute: str) -> dict[str, float] | None:
        """The calibrated default shares of ``attribute``'s values (``draws``), or None: equal shares."""
        given = self.meta.get("draws", {}).get(attribute)
        return {str(v): float(p) for v, p in given.items()} if given else None

    def names(self) -> list[str]:
        return sorted(self.files)

    def direction(self, name: str) -> Direction:
        if name not in self.files:
            raise UserError(
                f"The direction library has no {name!r}; it has {', '.join(self.names()) or 'nothing'}{closest(name, self.names())}."
            )
        if name not in self._cache:
            self._cache[name] = Direction.load(self.folder / self.files[name])
        return self._cache[name]

    def values(self, attribute: str) -> list[str]:
        return [n.split("=", 1)[1] for n in self.names() if n.split("=", 1)[0] == attribute]

    def check_model(self, unet) -> None:
        for name in self.names():
            self.direction(name).check_model(unet)

    def fair(self, attribute: str, n_images: int, seed: int, shares: str | dict[str, float] | None = None,
             strength: float | None = None, draw: str = "spread") -> FairChoice:  # fmt: skip
        """Draw a value of ``attribute`` for each of ``n_images`` images (image i from ``seed + i``, by ``draw``:
        :data:`segakit.core.draws.DRAWS`); ``strength`` None: each value's recipe (:meth:`recipe`), else every
        value's own direction at ``strength``."""
        allowed = self.values(attribute)
        known = sorted({n.split("=", 1)[0] for n in self.names() if "=" in n})
        if not allowed and attribute not in known:
            raise UserError(f"{arg('fair')} {attribute!r} is not an attribute of the direction library; fairness needs two or more "
                            f"of an attribute's values, which it has for {', '.join(self.fair_attributes()) or 'none'}{closest(attribute, known)}.")  # fmt: skip
        if len(allowed) < 2:
            raise UserError(f"{arg('fair')} {attribute!r}: the library has directions for {len(allowed)} of its values; fairness needs two or more "
                            f"(attributes with enough: {', '.join(self.fair_attributes()) or 'none'}).")  # fmt: skip
        if shares is None and strength is None:
            shares = self.draw_shares(attribute)
        table = shares if isinstance(shares, dict) else parse_shares(attribute, shares, allowed)
        choices = draw_values(table, n_images, seed, draw)
        plan = {
            v: [(key(attribute, v), strength)] if strength is not None else self.recipe(key(attribute, v))
            for v in table
        }
        return FairChoice(attribute, choices, {v: [(self.direction(n), st) for n, st in r] for v, r in plan.items()})

    def fair_attributes(self) -> list[str]:
        attrs = {n.split("=", 1)[0] for n in self.names()}
        return sorted(a for a in attrs if len(self.values(a)) >= 2)

    def safe(self, strength: float | None = None) -> AppliedDirection:
        return self.direction(SAFE).at(self.strength_of(SAFE) if strength is None else strength)

    def enhance(self, prompt: str, strength: float = 1.0) -> list[str]:
        """The names of the library's directions for the ``attribute=value`` pairs ``prompt`` names."""
        from segakit.world.captions import parse_caption

        named = [key(a, v) for a, values in parse_caption(prompt).items() for v in values]
        return [n for n in named if n in self.files]
