"""A worker: loads a model once, runs batches of jobs (handing back finished PNGs as bytes) and in-memory calls
(:class:`segakit.jobs.calls.Call`, handing back what the call's function returned).

The same object runs in the main process, in each local worker process and inside each Ray actor; it never
writes a file. The process that started the run writes every PNG (atomically, and only if it is not there
yet), so a worker that dies can have its batch run again elsewhere without anything being written twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from segakit.core.errors import UserError
from segakit.jobs.batching import Batch
from segakit.jobs.calls import Call, Returned

MAX_ATTEMPTS = 3  # a batch (or call) whose worker dies this many times comes back as an error


@dataclass
class Rendered:
    """One job's outcome: its PNG (or the sentence saying why there is none), its share of the batch's seconds,
    the batch size, and the oracle's reading when asked for."""

    id: str
    png: bytes | None
    seconds: float
    batch: int
    oracle: dict | None = None
    error: str | None = None


@dataclass
class WorkerConfig:
    device: str = "cpu"
    dtype: str = "fp32"  # fp32, fp16 or bf16
    classify: bool = False
    # torch intra-op threads. Part of the computation: on this torch (CPU, float32) 1 and 2 threads give
    # different last bits for some batches, so every mode runs the same number (1) unless told otherwise.
    # 0 leaves torch's setting as it is (a study run in its own process, as it always ran)
    threads: int = 1


def failure(item: Batch | Call, why: str) -> list[Rendered] | Returned:
    """What a batch or call whose worker kept dying comes back as: every job (or the call) with ``why`` as its error."""
    if isinstance(item, Call):
        return Returned(item.index, None, 0.0, error=why)
    return [Rendered(j.id, None, 0.0, len(item.jobs), error=why) for j in item.jobs]


def lost(queue, item: Batch | Call, attempt: int) -> list[Rendered] | Returned | None:
    """An item whose worker died: back at the front of ``queue`` for another try (None), or, after
    :data:`MAX_ATTEMPTS`, its :func:`failure`."""
    if attempt < MAX_ATTEMPTS:
        queue.appendleft((item, attempt + 1))
        return None
    return failure(item, f"the worker running it died {MAX_ATTEMPTS} times.")


class Worker:
    """Keeps the last pipeline it loaded (per model, LoRAs and embeddings) and the oracle; runs batches and calls."""

    def __init__(self, config: WorkerConfig | None = None) -> None:
        import torch

        self.config = config or WorkerConfig()
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        self._key: tuple | None = None
        self._pipe = None
        self._oracle = None

    def adopt(self, model: str, pipe) -> None:
        """Use ``pipe`` (already loaded, no adapters) for ``model``: a study's own pipeline, in its own process."""
        self._pipe, self._key = pipe, (model, (), ())

    def do(self, item: Batch | Call) -> list[Rendered] | Returned:
        """Run a batch of jobs or an in-memory call."""
        return self.call(item) if isinstance(item, Call) else self.run(item)

    def call(self, call: Call) -> Returned:
        """``call.fn(pipe, *call.args)`` on the pipeline of ``call.model``, timed (loading the model is not counted)."""
        from segakit.jobs.generate import GenerationParams

        pipe = self._load((call.model, (), ()), GenerationParams("", model=call.model))
        start = time.perf_counter()
        value = call.fn(pipe, *call.args)
        return Returned(call.index, value, time.perf_counter() - start)

    def pipeline(self, batch: Batch):
        """The pipeline for ``batch``'s model, loaded (with its adapters) only when it changes."""
        return self._load(batch.model, batch.jobs[0].params)

    def _load(self, key: tuple, params):
        """The pipeline for load key ``key`` (model, LoRAs, embeddings as in ``params``), loaded when it changes."""
        import torch

        from segakit.jobs.generate import load_adapters
        from segakit.sega.pipeline import SegaPipeline

        if key != self._key:
            from diffusers.utils import logging as diffusers_logging
            from transformers.utils import logging as transformers_logging

            diffusers_logging.disable_progress_bar()  # the run's own progress display is the one that counts
            transformers_logging.disable_progress_bar()
            self._pipe, self._key = None, None
            dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[self.config.dtype]
            pipe = SegaPipeline.from_pretrained(params.model, dtype=dtype).to(self.config.device)
            pipe.set_progress_bar_config(disable=True)
            load_adapters(pipe, params)
            self._pipe, self._key = pipe, key
        return self._pipe

    def oracle(self):
        if self._oracle is None:
            from segakit.world.oracle import Oracle

            self._oracle = Oracle.load(device=self.config.device)
        return self._oracle

    def run(self, batch: Batch) -> list[Rendered]:
        """Generate ``batch`` in one pipeline call; a job's bad input (found only now) comes back as its error."""
        from segakit.core.images import png_bytes
        from segakit.jobs.generate import image_meta, prepare, sample, with_idle_warning

        n = len(batch.jobs)
        try:
            pipe = self.pipeline(batch)
            start = time.perf_counter()  # loading the model is not a job's time
            job = prepare(batch.jobs[0].params, pipe)
            prompts = [j.params.prompt for j in batch.jobs]
            result, fair = sample(pipe, job, prompts, [j.params.seed for j in batch.jobs])
            readings = self.oracle().predict(result.images) if self.config.classify else [None] * n
        except UserError as exc:
            return [Rendered(j.id, None, 0.0, n, error=str(exc)) for j in batch.jobs]
        seconds = (time.perf_counter() - start) / n
        metas, _ = with_idle_warning(
            [image_meta(job, j.params.seed, j.params.prompt, fair, i) for i, j in enumerate(batch.jobs)], pipe
        )
        return [
            Rendered(j.id, png_bytes(image, meta), seconds, n, reading)
            for j, image, meta, reading in zip(batch.jobs, result.images, metas, readings)
        ]
