"""One model in memory behind a bounded queue: jobs run one at a time on a worker thread.

``submit`` admits a job while fewer than ``max_queue`` are running or waiting, and otherwise raises
:class:`QueueFull` with an estimate of when to retry (the server answers 429 with Retry-After). A job can be
cancelled (its client went away): if it has not started it is dropped, if it is running it stops at the next
denoising step. Every job is logged as one JSON line: its parameters, the time it waited and the time it ran.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from segakit.core.errors import UserError

log = logging.getLogger("segakit.serve")


class QueueFull(Exception):
    """The queue holds ``max_queue`` jobs; try again after ``retry_after`` seconds."""

    def __init__(self, max_queue: int, retry_after: int) -> None:
        super().__init__(f"The server is busy with {max_queue} requests, its limit; retry in {retry_after} s.")
        self.retry_after = retry_after


class Cancelled(Exception):
    """The job was cancelled (its client went away) before it finished."""


@dataclass
class Job:
    """A unit of work: ``task(check)`` runs on the worker thread; ``check()`` raises :class:`Cancelled` once cancelled."""

    id: int
    kind: str
    summary: dict
    task: Callable[[Callable[[], None]], object]
    future: Future = field(default_factory=Future)
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    _cancel: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self._cancel.set()
        self.future.cancel()  # succeeds only if the job has not started

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        if self._cancel.is_set():
            raise Cancelled(f"job {self.id} was cancelled")

    @property
    def wait_seconds(self) -> float:
        return (self.started or time.monotonic()) - self.submitted

    @property
    def run_seconds(self) -> float:
        return 0.0 if self.started is None else ((self.finished or time.monotonic()) - self.started)


@dataclass
class Stats:
    served: int = 0
    failed: int = 0  # a bug or a broken model (answered 500)
    invalid: int = 0  # refused while running (a bad direction file, ...: answered 400)
    cancelled: int = 0
    rejected: int = 0
    run_seconds: float = 0.0  # total over served jobs


class Worker:
    """The queue and the thread that runs its jobs one at a time (the model is shared, so one at a time)."""

    def __init__(self, max_queue: int) -> None:
        import torch

        self.max_queue = max_queue
        # torch's thread count is per thread (OpenMP): the worker runs with the count of the thread that made it,
        # i.e. what `segakit serve --threads` set, not whatever a fresh thread would start with
        self.threads = torch.get_num_threads()
        self.stats = Stats()
        self._ids = itertools.count(1)
        self._waiting: deque[Job] = deque()
        self._running: Job | None = None
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="segakit-worker", daemon=True)
        self._thread.start()

    def submit(self, kind: str, summary: dict, task: Callable[[Callable[[], None]], object]) -> Job:
        """Queue ``task``; raises :class:`QueueFull` when ``max_queue`` jobs are already running or waiting."""
        with self._cond:
            if self._closed:
                raise UserError("The server is shutting down; it takes no new requests.")
            busy = len(self._waiting) + (self._running is not None)
            if busy >= self.max_queue:
                self.stats.rejected += 1
                raise QueueFull(self.max_queue, self._retry_after(busy))
            job = Job(next(self._ids), kind, summary, task)
            self._waiting.append(job)
            self._cond.notify()
        return job

    def _retry_after(self, busy: int) -> int:
        mean = self.stats.run_seconds / self.stats.served if self.stats.served else 1.0
        return max(1, math.ceil(mean * busy))

    def queue(self) -> dict:
        with self._cond:
            return {"running": int(self._running is not None), "waiting": len(self._waiting), "max": self.max_queue}

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking jobs, cancel the waiting ones, and let the running one finish or stop."""
        with self._cond:
            self._closed = True
            for job in self._waiting:
                job.cancel()
            if self._running is not None:
                self._running.cancel()
            self._cond.notify_all()
        self._thread.join(timeout)

    def _next(self) -> Job | None:
        with self._cond:
            while not self._waiting and not self._closed:
                self._cond.wait()
            if not self._waiting:
                return None
            job = self._waiting.popleft()
            self._running = job
            return job

    def _loop(self) -> None:
        import torch

        torch.set_num_threads(self.threads)
        while (job := self._next()) is not None:
            try:
                self._run(job)
            finally:
                with self._cond:
                    self._running = None

    def _run(self, job: Job) -> None:
        job.started = time.monotonic()
        if not job.future.set_running_or_notify_cancel():
            job.finished = job.started
            self._record(job, "cancelled")
            return
        try:
            job.check()
            result = job.task(job.check)
        except Cancelled as exc:
            self._resolve(job, "cancelled", exc=exc)
        except UserError as exc:
            self._resolve(job, "rejected", str(exc), exc=exc)
        except Exception as exc:  # a bug or a broken model: logged with its traceback, reported, and the worker goes on
            log.exception("job %d (%s) failed", job.id, job.kind)
            self._resolve(job, "failed", f"{type(exc).__name__}: {exc}", exc=exc)
        else:
            self._resolve(job, "ok", result=result)

    def _resolve(
        self,
        job: Job,
        status: str,
        message: str | None = None,
        *,
        exc: BaseException | None = None,
        result: object = None,
    ) -> None:
        """Record the job, free its slot, then hand its outcome to the waiting request: a client that submits again
        the moment its result arrives finds the slot free (resolving first let it be told "busy")."""
        job.finished = time.monotonic()
        self._record(job, status, message)
        with self._cond:
            self._running = None
        if exc is not None:
            job.future.set_exception(exc)
        else:
            job.future.set_result(result)

    def _record(self, job: Job, status: str, message: str | None = None) -> None:
        with self._cond:
            if status == "ok":
                self.stats.served += 1
                self.stats.run_seconds += job.run_seconds
            elif status == "cancelled":
                self.stats.cancelled += 1
            elif status == "rejected":
                self.stats.invalid += 1
            else:
                self.stats.failed += 1
        line = {"job": job.id, "kind": job.kind, "status": status, "wait_s": round(job.wait_seconds, 3),
                "run_s": round(job.run_seconds, 3), "params": job.summary}  # fmt: skip
        if message:
            line["message"] = message
        log.info(json.dumps(line, sort_keys=True, default=str))
