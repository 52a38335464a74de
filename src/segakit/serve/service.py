"""What the API and the app share: the model in memory, its direction library, the worker, the limits."""

from __future__ import annotations

import time
from dataclasses import dataclass

from segakit.jobs.batching import call_key, rows_per_image
from segakit.jobs.generate import GenerationParams, render
from segakit.jobs.together import render_together
from segakit.serve.config import ServeConfig
from segakit.serve.schema import GenerateRequest, to_params
from segakit.serve.worker import Job, Worker


@dataclass
class Image:
    """One generated image: its PNG (carrying ``params``) and those parameters."""

    png: bytes
    params: dict


class Service:
    def __init__(self, config: ServeConfig, pipe, library=None) -> None:
        config.limits.check()
        self.config = config
        self.pipe = pipe
        self.library = library
        self.worker = Worker(config.limits.max_queue, config.limits.max_batch_rows)
        self.started = time.time()

    @classmethod
    def load(cls, config: ServeConfig) -> Service:
        """Load the model once (and, for the embedded model, its direction library)."""
        import torch

        from segakit.directions.library import Library, default_library_path
        from segakit.sega.pipeline import SegaPipeline

        pipe = SegaPipeline.from_pretrained(config.model, dtype=torch.float32).to(config.device)
        pipe.set_progress_bar_config(disable=True)
        folder = default_library_path(config.model)  # the embedded models' own; others serve no directions
        return cls(config, pipe, Library.load(folder) if folder is not None else None)

    def params(self, req: GenerateRequest) -> GenerationParams:
        return to_params(req, self.config.model, self.config.limits, self.library)

    def submit(self, params: GenerationParams, kind: str = "generate") -> Job:
        """Queue a generation; raises QueueFull when the queue is full. The job's result is a list of :class:`Image`.
        Generations that differ only in prompt, seed, image count and concepts may run in one call
        (:func:`segakit.jobs.batching.call_key`, up to ``limits.max_batch_rows`` denoiser rows)."""

        def task(check) -> list[Image]:
            check()
            return _images(render(params, self.pipe, progress=lambda _: check()))

        shared = {"key": call_key(params, concepts_apart=True), "payload": params, "together": self._together,
                  "rows": params.num_images * rows_per_image(params)}  # fmt: skip
        return self.worker.submit(kind, params.to_json(), task, **shared)

    def _together(self, jobs: list[Job], check) -> list[object]:
        """Jobs of one key in one pipeline call: each job's images, or the exception its request raised."""
        try:
            done = render_together([j.payload for j in jobs], self.pipe, progress=lambda _: check())
        finally:
            release_free_memory()
        return [d if isinstance(d, Exception) else _images(d) for d in done]

    def generate(self, params: GenerationParams, kind: str = "generate") -> list[Image]:
        """Queue a generation and wait for it (the app's threads)."""
        return self.submit(params, kind).future.result()

    def health(self) -> dict:
        from segakit import __version__

        stats = self.worker.stats
        return {
            "status": "ok", "segakit_version": __version__, "model": self.config.model,
            "queue": self.worker.queue(), "served": stats.served, "failed": stats.failed, "invalid": stats.invalid,
            "cancelled": stats.cancelled, "rejected_busy": stats.rejected, "calls": stats.calls,
            "uptime_s": round(time.time() - self.started, 1), "editing": True,
            "directions": self.library.names() if self.library is not None else [],
            "limits": {k: getattr(self.config.limits, k) for k in self.config.limits.__dataclass_fields__},
            "token_required": self.config.token is not None,
        }  # fmt: skip

    def close(self) -> None:
        self.worker.close()


def release_free_memory() -> None:
    """Hand the memory the C allocator holds free back to the system (glibc's ``malloc_trim``; elsewhere nothing).

    Shared calls of changing sizes allocate activations of changing sizes; glibc raises its mmap threshold after
    freeing large blocks and then serves them from its heap, which fragments. ``python benchmarks/serve_memory.py
    --calls 50`` (50 shared calls of 2-29 requests) measured the memory settling at about 700 MB with this after each
    call, and growing past 1.5 GB without it (``--no-release``). It runs once per shared call."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError, TypeError):  # not glibc: nothing to do
        pass


def _images(done) -> list[Image]:
    """A rendered job's images as PNGs that carry their parameters."""
    from segakit.core.images import png_bytes

    return [Image(png_bytes(im, meta), meta) for im, meta in zip(done.images, done.params)]
