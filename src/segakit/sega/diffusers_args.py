"""The argument names of diffusers' deprecated ``SemanticStableDiffusionPipeline`` (``editing_prompt``,
``edit_guidance_scale``, ...), per concept or one for all, as typed :class:`Edit` objects with diffusers' defaults."""

from __future__ import annotations

from segakit.sega.guidance import Edit


def _per_concept(value, k: int):
    return value[k] if isinstance(value, (list, tuple)) else value


def edits_from_diffusers_args(
    editing_prompt: str | list[str] | None,
    n_embeddings: int,
    reverse_editing_direction: bool | list[bool] = False,
    edit_guidance_scale: float | list[float] = 5,
    edit_warmup_steps: int | list[int] = 10,
    edit_cooldown_steps: int | list[int] | None = None,
    edit_threshold: float | list[float] = 0.9,
    edit_weights: list[float] | None = None,
) -> list[Edit]:
    """The deprecated pipeline's per-argument lists, as typed :class:`Edit` objects."""
    prompts: list[str | None]
    if editing_prompt:
        prompts = [editing_prompt] if isinstance(editing_prompt, str) else list(editing_prompt)
    else:
        prompts = [None] * n_embeddings
    return [
        Edit(
            prompt=p,
            scale=float(_per_concept(edit_guidance_scale, k)),
            threshold=float(_per_concept(edit_threshold, k)),
            warmup=int(_per_concept(edit_warmup_steps, k)),
            cooldown=None
            if _per_concept(edit_cooldown_steps, k) is None
            else int(_per_concept(edit_cooldown_steps, k)),
            reverse=bool(_per_concept(reverse_editing_direction, k)),
            weight=float(edit_weights[k]) if edit_weights else 1.0,
        )
        for k, p in enumerate(prompts)
    ]
