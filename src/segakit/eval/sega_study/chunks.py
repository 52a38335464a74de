"""The SEGA study's pipeline calls, one chunk of seeds each, as functions a batch-runner worker runs
(``fn(pipe, *args)``, see :mod:`segakit.jobs.calls`): the study hands its chunks to the runner, so one process,
local workers and Ray actors compute the same images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from segakit.eval.embedded_quality import sample_images
from segakit.eval.sega_study.measures import quantize
from segakit.sega.guidance import Edit


def generate_chunk(pipe, prompt: str, seeds: Sequence[int], steps: int, guidance: float, edits: Sequence[Edit] = (),
                   edit_refresh: int = 1, guidance_refresh: int = 1) -> np.ndarray:  # fmt: skip
    """uint8 images (N, 3, 64, 64) of ``prompt`` for ``seeds`` in one pipeline call, one generator per seed."""
    images = sample_images(pipe, prompt, list(seeds), steps, guidance, len(seeds), list(edits),
                           edit_refresh=edit_refresh, guidance_refresh=guidance_refresh)  # fmt: skip
    return quantize(images).numpy()


def guided_chunk(pipe, prompt: str, seeds: Sequence[int], steps: int, guidance: float, edits: Sequence[Edit] = (),
                 record: bool = False, reuse: np.ndarray | None = None, edit_refresh: int = 1,
                 guidance_refresh: int = 1) -> tuple[np.ndarray, np.ndarray | None]:  # fmt: skip
    """Like :func:`generate_chunk`, recording the semantic guidance (returned as floats, steps x images first) or
    re-applying ``reuse`` (this chunk's images of a recorded guidance)."""
    from segakit.world.oracle import to_tensor

    out = pipe(
        prompt, num_inference_steps=steps, guidance_scale=guidance, num_images_per_prompt=len(seeds),
        generator=[torch.Generator().manual_seed(int(s)) for s in seeds], edits=list(edits), output_type="pt",
        record_guidance=record, record_device="cpu", sem_guidance=None if reuse is None else torch.from_numpy(reuse),
        edit_refresh=edit_refresh, guidance_refresh=guidance_refresh,
    )  # fmt: skip
    images = quantize(to_tensor(out.images.float().cpu())).numpy()
    return images, (out.guidance.guidance.float().cpu().numpy() if record else None)
