"""Running batches on this machine: in this process, or in N worker processes that each load the model once.

An executor takes the batches to run and yields each batch's :class:`Rendered` list as it finishes (in any
order); it writes nothing itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from segakit.jobs.batching import Batch
from segakit.jobs.worker import Rendered, Worker, WorkerConfig


class InProcess:
    """Batches one after another in this process."""

    def __init__(self, config: WorkerConfig | None = None) -> None:
        self.worker = Worker(config)

    def run(self, batches: Iterable[Batch]) -> Iterator[list[Rendered]]:
        for batch in batches:
            yield self.worker.run(batch)

    def close(self) -> None:
        pass


_WORKER: Worker | None = None


def _start(config: WorkerConfig) -> None:
    global _WORKER
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _WORKER = Worker(config)


def _run(batch: Batch) -> list[Rendered]:
    assert _WORKER is not None
    return _WORKER.run(batch)


class LocalWorkers:
    """``workers`` processes (started fresh, not forked), each with its own :class:`Worker`; at most two
    batches queued per worker so an interrupted run leaves little work half-dispatched."""

    def __init__(self, workers: int, config: WorkerConfig | None = None) -> None:
        import multiprocessing

        config = config or WorkerConfig()
        self.workers = workers
        self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start, initargs=(config,))

    def run(self, batches: Iterable[Batch]) -> Iterator[list[Rendered]]:
        queue = list(batches)
        pending = set()
        while queue or pending:
            while queue and len(pending) < 2 * self.workers:
                pending.add(self.pool.submit(_run, queue.pop(0)))
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
