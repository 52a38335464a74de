"""``callback_on_step_end`` as diffusers defines it, for SegaPipeline's sampling loop.

After each denoising step the callback is called as ``callback(pipe, step, timestep, tensors)`` with the
tensors named in ``callback_on_step_end_tensor_inputs``; the dict it returns replaces any of them.
diffusers' ``PipelineCallback`` / ``MultiPipelineCallbacks`` objects bring their own tensor list.

The tensors have diffusers' Stable Diffusion layout: ``prompt_embeds`` is the text conditioning of the
classifier-free guidance batch, ``[negative rows; prompt rows]`` (only the prompt rows without guidance),
``negative_prompt_embeds`` its negative half. The edit concepts' conditioning is not exposed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from segakit.core.conditioning import Conditioning
from segakit.core.errors import UserError

TENSOR_INPUTS = ("latents", "prompt_embeds", "negative_prompt_embeds", "noise_pred")


class StepCallback:
    """One validated ``callback_on_step_end`` and the tensors it asked for."""

    def __init__(self, callback: Callable | None, tensor_inputs: Sequence[str] | None) -> None:
        from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

        if isinstance(callback, (PipelineCallback, MultiPipelineCallbacks)):
            tensor_inputs = callback.tensor_inputs
        if callback is not None and not callable(callback):
            raise UserError(
                f"callback_on_step_end {callback!r} is not callable; pass a function (pipe, step, timestep, tensors) -> dict."
            )
        names = list(tensor_inputs or [])
        unknown = [k for k in names if k not in TENSOR_INPUTS]
        if unknown:
            raise UserError(
                f"callback_on_step_end_tensor_inputs {unknown} are not available; choose from {list(TENSOR_INPUTS)}."
            )
        self.callback = callback
        self.names = names

    def __bool__(self) -> bool:
        return self.callback is not None

    def __call__(self, pipe, step: int, t, tensors: dict[str, torch.Tensor | None]) -> dict[str, torch.Tensor]:
        """Run the callback; returns only the tensors it replaced (checked against the originals' shapes)."""
        given = {k: tensors[k] for k in self.names}
        out = self.callback(pipe, step, t, given)
        if out is None:
            return {}
        if not isinstance(out, dict):
            raise UserError(
                f"callback_on_step_end returned {type(out).__name__}; it must return a dict of tensors (or None)."
            )
        changed = {}
        for name, value in out.items():
            if name not in TENSOR_INPUTS or value is None:
                continue
            old = tensors.get(name)
            if old is not None and tuple(value.shape) != tuple(old.shape):
                raise UserError(
                    f"callback_on_step_end returned {name} of shape {tuple(value.shape)}; SegaPipeline needs "
                    f"{tuple(old.shape)} (it cannot change the batch mid-run)."
                )
            changed[name] = value
        return changed


class CallState:
    """What diffusers' callbacks read from the pipeline during a call (``pipe.guidance_scale``, ...)."""

    _cross_attention_kwargs: dict | None = None
    _guidance_scale: float = 7.5
    _guidance_rescale: float = 0.0
    _num_timesteps: int = 0
    _interrupt: bool = False

    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def guidance_rescale(self) -> float:
        return self._guidance_rescale

    @property
    def do_classifier_free_guidance(self) -> bool:
        return self._guidance_scale > 1.0

    @property
    def cross_attention_kwargs(self) -> dict | None:
        return self._cross_attention_kwargs

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        """Set ``pipe._interrupt = True`` from a step callback to stop after that step (diffusers' convention)."""
        return self._interrupt

    def _run_step_callback(
        self, callback: StepCallback, i, t, latents, noise_pred, base: Conditioning, batch: int, do_cfg: bool
    ):
        """``callback_on_step_end`` after step ``i``; returns the (possibly replaced) latents and base conditioning."""
        tensors = {
            "latents": latents,
            "noise_pred": noise_pred,
            "prompt_embeds": base.embeds,
            "negative_prompt_embeds": base.embeds[:batch] if do_cfg else None,
        }
        changed = callback(self, i, t, tensors)
        embeds = changed.get("prompt_embeds", base.embeds)
        if "negative_prompt_embeds" in changed and do_cfg:
            embeds = torch.cat([changed["negative_prompt_embeds"], embeds[batch:]])
        if embeds is not base.embeds:
            base = Conditioning(embeds.to(base.embeds), base.pooled, base.time_ids, base.image_embeds)
        return changed.get("latents", latents), base
