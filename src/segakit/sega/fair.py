"""Fair Diffusion (Friedrich et al., 2023): fair generation with SEGA edits, the peer of fair h-space directions.

For each image one value of an attribute is drawn (the same per-image draw as the directions' fairness,
:func:`segakit.core.draws.draw_values`: image ``i`` from ``seed + i``), and the image gets SEGA edits towards
that value's word and away from every other value's word (``+woman -man``; for skin ``+dark skin`` and
``-light skin``, ``-medium skin``, ...). The words are the faces world's concept words for the values
(:data:`segakit.world.captions.CONCEPTS`), so the edits are in the embedded model's vocabulary.

SEGA's edits are shared by every image of a pipeline call, so the images are generated in one call per drawn
value (each with its own generators) and put back in seed order::

    fair = FairDiffusion.draw("presentation", n_images=8, seed=0)
    gens = [torch.Generator().manual_seed(s) for s in range(8)]
    out = fair_generate(pipe, "a doctor", fair, generator=gens, num_inference_steps=25)
    out.images, fair.choices
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from segakit.core.draws import draw_values, parse_shares
from segakit.core.errors import UserError
from segakit.sega.guidance import Edit
from segakit.world.captions import CONCEPTS
from segakit.world.schema import ATTRIBUTES


def fair_attributes() -> list[str]:
    """The attributes Fair Diffusion can balance: two or more values, each with a concept word."""
    return [a for a, values in ATTRIBUTES.items() if len(values) >= 2 and all(v in CONCEPTS.get(a, {}) for v in values)]


def value_words(attribute: str) -> dict[str, str]:
    """Each value of ``attribute`` and the word its SEGA edit uses (the world's first concept word for it)."""
    if attribute not in fair_attributes():
        raise UserError(f"--fair {attribute!r} with --method sega: Fair Diffusion needs an attribute whose values all have words; "
                        f"one of {', '.join(fair_attributes())}.")  # fmt: skip
    return {str(v): CONCEPTS[attribute][v][0] for v in ATTRIBUTES[attribute]}


def value_edits(words: dict[str, str], value: str, edit: Edit | None = None) -> list[Edit]:
    """The edits of an image that drew ``value``: towards its word, away from the others' (``+woman -man``).

    ``edit`` gives the parameters (scale, threshold, warm-up, ...; unset fields take the model's defaults)."""
    base = edit or Edit()
    toward = replace(base, prompt=words[value], reverse=False)
    return [toward, *(replace(base, prompt=w, reverse=True) for v, w in words.items() if v != value)]


@dataclass
class FairDiffusion:
    """The values drawn for a run's images and the words their edits use."""

    attribute: str
    choices: list[str]  # the value drawn for each image
    words: dict[str, str]
    edit: Edit | None = None  # the edits' parameters (None: the model's defaults)

    @classmethod
    def draw(cls, attribute: str, n_images: int, seed: int, shares: str | dict[str, float] | None = None,
             edit: Edit | None = None, draw: str = "spread") -> FairDiffusion:  # fmt: skip
        """Draw a value for each of ``n_images`` images (image i from ``seed + i``, by ``draw``: spread or random),
        equal shares unless given."""
        words = value_words(attribute)
        table = shares if isinstance(shares, dict) else parse_shares(attribute, shares, list(words))
        return cls(attribute, draw_values(table, n_images, seed, draw), words, edit)

    def groups(self) -> dict[str, list[int]]:
        """The images of each drawn value, in order: one pipeline call each."""
        out: dict[str, list[int]] = {}
        for i, value in enumerate(self.choices):
            out.setdefault(value, []).append(i)
        return out

    def edits(self, value: str) -> list[Edit]:
        return value_edits(self.words, value, self.edit)


def fair_generate(pipe, prompt: str, fair: FairDiffusion, generator: Sequence[torch.Generator], edits: Sequence[Edit] = (),
                  **kwargs):  # fmt: skip
    """``pipe(prompt, ...)`` for ``len(fair.choices)`` images, each with its drawn value's edits after ``edits``.

    One call per value; ``generator`` holds one generator per image (image i's from its own seed), so an image
    comes out as it would alone. Returns the pipeline's output with the images (and edits of the last call)
    in image order."""
    gens = list(generator)
    if len(gens) != len(fair.choices):
        raise UserError(
            f"Fair Diffusion drew values for {len(fair.choices)} images; {len(gens)} generators were given."
        )
    kwargs.pop("num_images_per_prompt", None)
    if kwargs.get("record_guidance") and len(fair.groups()) > 1:
        raise UserError(
            "Recorded guidance holds one generation; Fair Diffusion makes one per drawn value, so it cannot be recorded."
        )
    parts: list[tuple[list[int], object]] = []
    for value, rows in fair.groups().items():
        out = pipe(prompt, num_images_per_prompt=len(rows), generator=[gens[r] for r in rows],
                   edits=[*edits, *fair.edits(value)], **kwargs)  # fmt: skip
        parts.append((rows, out.images))
    order = [0] * len(gens)
    flat: list = []
    for rows, images in parts:
        for k, r in enumerate(rows):
            order[r] = len(flat) + k
        flat.extend(images if isinstance(images, list) else list(images))
    images = [flat[i] for i in order]
    if not isinstance(parts[0][1], list):  # tensors or arrays: stack back
        images = torch.stack(images) if isinstance(images[0], torch.Tensor) else np.stack(images)
    out.images = images
    return out


# what a pipeline call passes on to each of Fair Diffusion's calls: all but these
_PER_CALL = (
    "self",
    "prompt",
    "fair",
    "generator",
    "edits",
    "editing_prompt",
    "editing_prompt_embeddings",
    "num_images_per_prompt",
)


def fair_call(pipe, call: dict, edits: Sequence[Edit]):
    """``pipe(**call)`` where ``call["fair"]`` is a :class:`FairDiffusion` draw: ``SegaPipeline.__call__(fair=...)``.

    ``edits`` are the call's own edits (typed, with the model's defaults); each drawn value's edits follow them."""
    fair, prompt, generator = call["fair"], call["prompt"], call["generator"]
    if not isinstance(fair, FairDiffusion):
        raise UserError(
            f"fair= takes a direction library's draw (Library.fair) or a FairDiffusion draw; got {type(fair).__name__}."
        )
    if call["editing_prompt_embeddings"] is not None:
        raise UserError(
            "fair= with a FairDiffusion draw takes its edits as words; pass edits=[Edit(...)], not editing_prompt_embeddings."
        )
    if not isinstance(prompt, str) and len(prompt) != 1:
        raise UserError(f"fair= draws a value per image of one prompt; {len(prompt)} prompts were given.")
    if not isinstance(generator, (list, tuple)):
        raise UserError(f"fair= needs one generator per image, a list of {len(fair.choices)} (image i from its own seed), "
                        "so that each image comes out as it would alone.")  # fmt: skip
    kwargs = {k: v for k, v in call.items() if k not in _PER_CALL}
    return fair_generate(pipe, prompt if isinstance(prompt, str) else prompt[0], fair, generator, edits, **kwargs)
