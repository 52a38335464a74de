"""One model in memory behind a bounded queue: jobs run on one worker thread, those that can share a call together.

``submit`` admits a job while fewer than ``max_queue`` are running or waiting, and otherwise raises
:class:`QueueFull` with an estimate of when to retry (the server answers 429 with Retry-After). A job can be
cancelled (its client went away): if it has not started it is dropped, if it is running it stops at the next
denoising step. Every job is logged as one JSON line: its parameters, the time it waited and the time it ran.

Batching: when the worker takes the oldest waiting job, it takes with it every waiting job with the same ``key``
(jobs that can share one pipeline call), oldest first, while their denoiser rows add up to at most ``max_rows``,
and runs them with the jobs' ``together`` function in one call. A job cancelled before that is left out; one
cancelled while the call runs keeps its rows to the end of the call and its result is dropped (the call stops at
the next step only when every job in it is cancelled). If the shared call fails, each of its jobs runs again alone,
so one request's failure is its own.
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
    key: str | None = None  # jobs with equal keys can share a call (None: it runs alone)
    rows: int = 1  # denoiser rows it brings to a shared call
    payload: object = None  # what ``together`` needs of it
    # ``together(jobs, check)``: one outcome per job (its result, or the exception it raised); ``check`` raises
    # Cancelled once every job is cancelled
    together: Callable[[list[Job], Callable[[], None]], list[object]] | None = None
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
    busy_seconds: float = 0.0  # the worker's time on served jobs (a shared call counted once)
    calls: int = 0  # calls that served jobs; served / calls is the mean batch


class Worker:
    """The queue and the thread that runs its jobs, one call at a time (the model is shared): a job alone, or jobs
    of one key together, up to ``max_rows`` denoiser rows (1: every job alone)."""

    def __init__(self, max_queue: int, max_rows: int = 1) -> None:
        import torch

        self.max_queue = max_queue
        self.max_rows = max_rows
        # torch's thread count is per thread (OpenMP): the worker runs with the count of the thread that made it,
        # i.e. what `segakit serve --threads` set, not whatever a fresh thread would start with
        self.threads = torch.get_num_threads()
        self.stats = Stats()
        self._ids = itertools.count(1)
        self._waiting: deque[Job] = deque()
        self._running: list[Job] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="segakit-worker", daemon=True)
        self._thread.start()

    def submit(self, kind: str, summary: dict, task: Callable[[Callable[[], None]], object], **shared) -> Job:
        """Queue ``task``; raises :class:`QueueFull` when ``max_queue`` jobs are already running or waiting.
        ``shared``: the job's ``key``, ``rows``, ``payload`` and ``together``, when it can share a call."""
        with self._cond:
            if self._closed:
                raise UserError("The server is shutting down; it takes no new requests.")
            busy = len(self._waiting) + len(self._running)
            if busy >= self.max_queue:
                self.stats.rejected += 1
                raise QueueFull(self.max_queue, self._retry_after(busy))
            job = Job(next(self._ids), kind, summary, task, **shared)
            self._waiting.append(job)
            self._cond.notify()
        return job

    def _retry_after(self, busy: int) -> int:
        """Seconds until ``busy`` jobs are done: the worker's mean time per served job (a shared call's time spread
        over its jobs) times ``busy``, at least 1."""
        mean = self.stats.busy_seconds / self.stats.served if self.stats.served else 1.0
        return max(1, math.ceil(mean * busy))

    def queue(self) -> dict:
        with self._cond:
            return {"running": len(self._running), "waiting": len(self._waiting), "max": self.max_queue}

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking jobs, cancel the waiting ones, and let the running one finish or stop."""
        with self._cond:
            self._closed = True
            for job in [*self._waiting, *self._running]:
                job.cancel()
            self._cond.notify_all()
        self._thread.join(timeout)

    def _next(self) -> list[Job]:
        """The oldest waiting job and the waiting jobs that share its call (none when closed)."""
        with self._cond:
            while not self._waiting and not self._closed:
                self._cond.wait()
            if not self._waiting:
                return []
            batch = [self._waiting.popleft()]
            head, rows = batch[0], batch[0].rows
            if head.key is not None and head.together is not None and not head.cancelled:
                for job in list(self._waiting):
                    if job.key == head.key and not job.cancelled and rows + job.rows <= self.max_rows:
                        self._waiting.remove(job)
                        batch.append(job)
                        rows += job.rows
            self._running = list(batch)
            return batch

    def _loop(self) -> None:
        import torch

        torch.set_num_threads(self.threads)
        while batch := self._next():
            start = time.monotonic()
            try:
                served = self._run_together(batch) if len(batch) > 1 else int(self._run(batch[0]) == "ok")
            finally:
                with self._cond:
                    self._running = []
            if served:
                with self._cond:
                    self.stats.busy_seconds += time.monotonic() - start
                    self.stats.calls += 1

    def _run_together(self, batch: list[Job]) -> int:
        """Run ``batch`` in one shared call; a job cancelled before it starts is left out. Returns the jobs served."""
        live = []
        for job in batch:
            job.started = time.monotonic()
            if job.future.set_running_or_notify_cancel():
                live.append(job)
            else:
                job.finished = job.started
                self._record(job, "cancelled")
                self._release(job)
        if len(live) <= 1:
            return sum(self._run(job, started=True) == "ok" for job in live)

        def check() -> None:
            if all(j.cancelled for j in live):
                raise Cancelled(f"jobs {', '.join(str(j.id) for j in live)} were all cancelled")

        try:
            outcomes = live[0].together(live, check)  # type: ignore[misc]
        except Cancelled as exc:
            for job in live:
                self._resolve(job, "cancelled", exc=exc)
            return 0
        except Exception:  # the shared call failed: each job runs alone, so that a failure is only its own
            log.exception("a shared call of jobs %s failed; running them one by one", [j.id for j in live])
            return sum(self._run(job, started=True) == "ok" for job in live)
        served = 0
        for job, outcome in zip(live, outcomes):
            if job.cancelled:
                self._resolve(job, "cancelled", exc=Cancelled(f"job {job.id} was cancelled"))
            elif isinstance(outcome, UserError):
                self._resolve(job, "rejected", str(outcome), exc=outcome)
            elif isinstance(outcome, Exception):
                log.error("job %d (%s) failed in a shared call: %r", job.id, job.kind, outcome)
                self._resolve(job, "failed", f"{type(outcome).__name__}: {outcome}", exc=outcome)
            else:
                self._resolve(job, "ok", result=outcome)
                served += 1
        return served

    def _release(self, job: Job) -> None:
        with self._cond:
            if job in self._running:
                self._running.remove(job)

    def _run(self, job: Job, started: bool = False) -> str:
        """Run ``job`` alone (``started``: its future is already running); returns its status."""
        job.started = job.started if started else time.monotonic()
        if not started and not job.future.set_running_or_notify_cancel():
            job.finished = job.started
            self._record(job, "cancelled")
            self._release(job)
            return "cancelled"
        try:
            job.check()
            result = job.task(job.check)
        except Cancelled as exc:
            return self._resolve(job, "cancelled", exc=exc)
        except UserError as exc:
            return self._resolve(job, "rejected", str(exc), exc=exc)
        except Exception as exc:  # a bug or a broken model: logged with its traceback, reported, and the worker goes on
            log.exception("job %d (%s) failed", job.id, job.kind)
            return self._resolve(job, "failed", f"{type(exc).__name__}: {exc}", exc=exc)
        return self._resolve(job, "ok", result=result)

    def _resolve(
        self,
        job: Job,
        status: str,
        message: str | None = None,
        *,
        exc: BaseException | None = None,
        result: object = None,
    ) -> str:
        """Record the job, free its slot, then hand its outcome to the waiting request: a client that submits again
        the moment its result arrives finds the slot free (resolving first let it be told "busy")."""
        job.finished = time.monotonic()
        self._record(job, status, message)
        self._release(job)
        if exc is not None:
            job.future.set_exception(exc)
        else:
            job.future.set_result(result)
        return status

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
