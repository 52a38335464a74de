"""Jobs into batches: one pipeline call (one U-Net batch per step) for jobs that differ only in prompt and seed.

The plan is a pure function of the job list and the two caps, never of how many workers run it, so every
mode (one process, local workers, Ray) makes exactly the same pipeline calls. That matters because a
U-Net batch is not bit-for-bit the same computation as the same rows run alone: on this machine's torch
(CPU, float32) a batched image's latents differ from the image run alone by about 2e-5 (``docs/scale.md``).
With ``batch_size=1`` every job runs alone and its PNG is byte-identical to ``segakit generate``.

A job that uses fair generation or recorded guidance runs alone (its per-image draws and the recorded
tensor's batch are tied to its own seed); a job with ``enhance`` batches only with the same prompt (its
directions follow the prompt's words).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from segakit.jobs.generate import GenerationParams
from segakit.jobs.jobfile import Job

DEFAULT_BATCH_SIZE = 8  # images per pipeline call
DEFAULT_MAX_ROWS = 64  # U-Net rows per call: images x (unconditional + prompt + edits)


@dataclass(frozen=True)
class Batch:
    """Jobs run in one pipeline call, in this order; ``model`` is what a worker must have loaded for them."""

    jobs: tuple[Job, ...]

    @property
    def model(self) -> tuple:
        return load_key(self.jobs[0])

    @property
    def ids(self) -> list[str]:
        return [j.id for j in self.jobs]


def load_key(job: Job) -> tuple:
    """What a loaded pipeline depends on: the model and the LoRAs and embeddings loaded into it."""
    p = job.params
    return (p.model, tuple((x.path, x.scale) for x in p.loras), tuple(p.embeddings))


# the SEGA options a call can give each group of its images (segakit.sega.groups), so requests that differ in them
# can share a call when the caller runs them with per-image concepts (the server does; the batch runner does not)
CONCEPT_OPTIONS = ("edits", "edit_refresh", "momentum_scale", "momentum_beta", "quantile_over")


def call_key(params: GenerationParams, concepts_apart: bool = False) -> str | None:
    """Generations with equal keys can share a pipeline call: every field but prompt, seed and the image count agrees
    (with ``concepts_apart``, the concepts and their options may differ too: one edit group each). None: it runs alone
    (fair generation and recorded guidance are tied to its own seeds, a sweep is several calls; with
    ``concepts_apart``, h-space directions, which edit groups do not take)."""
    if params.fair or params.apply_guidance or params.sweep is not None:
        return None
    if concepts_apart and (params.directions or params.safe or params.enhance):
        return None
    shared = replace(params, prompt=params.prompt if params.enhance else "", seed=0, num_images=1)
    if concepts_apart:
        blank = GenerationParams("")
        shared = replace(shared, **{name: getattr(blank, name) for name in CONCEPT_OPTIONS})
    return json.dumps(shared.to_json(), sort_keys=True)


def batch_key(job: Job) -> str:
    """Jobs with equal keys can share a pipeline call: every field but prompt and seed agrees."""
    key = call_key(job.params)
    return key if key is not None else json.dumps({"alone": job.id})


def rows_per_image(params: GenerationParams) -> int:
    """U-Net rows per image: unconditional and prompt (classifier-free guidance) plus one per edit."""
    cfg = params.guidance is None or params.guidance > 1.0
    return (2 + len(params.edits)) if cfg else 1


def unet_rows(job: Job) -> int:
    """U-Net rows per image of ``job``: unconditional and prompt (classifier-free guidance) plus one per edit."""
    return rows_per_image(job.params)


def plan(jobs: list[Job], batch_size: int = DEFAULT_BATCH_SIZE, max_rows: int = DEFAULT_MAX_ROWS) -> list[Batch]:
    """Batches of at most ``batch_size`` images and ``max_rows`` U-Net rows, groups in order of first appearance,
    jobs in JOBS order inside a group (appending lines to a JOBS file changes only each group's last batch)."""
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        groups.setdefault(batch_key(job), []).append(job)
    batches = []
    for members in groups.values():
        size = max(1, min(batch_size, max_rows // unet_rows(members[0])))
        batches.extend(Batch(tuple(members[i : i + size])) for i in range(0, len(members), size))
    return batches
