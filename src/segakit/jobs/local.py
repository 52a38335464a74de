"""Running batches (and in-memory calls) on this machine: in this process, or in N worker processes that each
load the model once.

An executor takes the work items to run (:class:`segakit.jobs.batching.Batch` or :class:`segakit.jobs.calls.Call`)
and yields each one's result as it finishes (in any order); it writes nothing itself.

Local workers behave as Ray actors do (:mod:`segakit.jobs.ray_actors`): each process holds one item at a time; a
process that dies (killed, out of memory) has the item it held put back at the front of the queue and a fresh
process started in its place, so the item runs again and nothing is lost; since only the process that started the
run writes files, nothing is written twice. An item whose worker dies :data:`MAX_ATTEMPTS` times comes back as an
error. A run that stops early (an exception, Ctrl-C) ends the processes that were still working, so what they
held never mixes into a later run.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections import deque
from collections.abc import Iterable, Iterator

from segakit.jobs.batching import Batch
from segakit.jobs.calls import Call
from segakit.jobs.worker import MAX_ATTEMPTS, Worker, WorkerConfig, lost

__all__ = ["MAX_ATTEMPTS", "InProcess", "LocalWorkers"]

Item = Batch | Call


class InProcess:
    """Items one after another in this process; ``pipe`` (with ``model``, its name) is used instead of loading one."""

    def __init__(self, config: WorkerConfig | None = None, pipe=None, model: str = "") -> None:
        self.worker = Worker(config)
        if pipe is not None:
            self.worker.adopt(model, pipe)

    def run(self, items: Iterable[Item]) -> Iterator:
        for item in items:
            yield self.worker.do(item)

    def close(self) -> None:
        pass


def _serve(conn, config: WorkerConfig) -> None:
    """A worker process's body: take an item, send back ("ok", result) or ("raise", exception); None ends it."""
    import threading

    from tqdm import tqdm

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    tqdm.set_lock(
        threading.RLock()
    )  # not tqdm's default process lock: a named semaphore this process would leave behind
    try:
        worker = Worker(config)
        while True:
            item = conn.recv()
            if item is None:
                break
            try:
                reply = ("ok", worker.do(item))
            except Exception as exc:  # a bug or a failure inside a call: raised again in the process that runs
                reply = ("raise", exc)
            try:
                conn.send(reply)
            except Exception as exc:  # a value or an exception that does not pickle: its text instead
                what = reply[1] if reply[0] == "raise" else exc
                conn.send(("raise", RuntimeError("".join(traceback.format_exception(what)).strip())))
    except (EOFError, KeyboardInterrupt, BrokenPipeError):  # the run ended or was interrupted: leave quietly
        pass
    finally:  # a worker writes no files: skip the interpreter's teardown, which takes seconds after torch has run
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


class _Process:
    """One worker process and this end of its pipe."""

    def __init__(self, ctx, config: WorkerConfig) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, config), daemon=True)
        self.process.start()
        child.close()

    @property
    def pid(self) -> int:
        return self.process.pid

    def ask_to_stop(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass

    def stop(self, wait: float = 5.0) -> None:
        self.ask_to_stop()
        self.process.join(wait)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()

    def kill(self) -> None:
        self.process.kill()
        self.process.join()
        self.conn.close()


class LocalWorkers:
    """``workers`` processes (started fresh, not forked), each with its own :class:`Worker` and one item at a time."""

    def __init__(self, workers: int, config: WorkerConfig | None = None) -> None:
        import multiprocessing

        self.ctx = multiprocessing.get_context("spawn")
        self.config = config or WorkerConfig()
        self.workers = workers
        self.procs = [_Process(self.ctx, self.config) for _ in range(workers)]
        self.retried = 0  # items put back because their process died
        self._busy: dict = {}  # connection -> (process, item, attempt)

    def in_flight(self) -> list[int]:
        """The process ids of the workers working on an item right now (not those whose result waits to be read)."""
        return [proc.pid for conn, (proc, _, _) in self._busy.items() if not conn.poll()]

    def _replace(self, proc: _Process) -> _Process:
        self.procs.remove(proc)
        fresh = _Process(self.ctx, self.config)
        self.procs.append(fresh)
        return fresh

    def run(self, items: Iterable[Item]) -> Iterator:
        from multiprocessing.connection import wait

        while len(self.procs) < self.workers:  # those ended when an earlier run stopped early
            self.procs.append(_Process(self.ctx, self.config))
        queue = deque((item, 1) for item in items)
        idle = list(self.procs)
        try:
            while queue or self._busy:
                while queue and idle:
                    proc, (item, attempt) = idle.pop(0), queue.popleft()
                    try:
                        proc.conn.send(item)
                    except (OSError, ValueError):  # the process died while idle: a fresh one takes the item
                        proc.kill()
                        idle.append(self._replace(proc))
                        queue.appendleft((item, attempt))
                        continue
                    self._busy[proc.conn] = (proc, item, attempt)
                for conn in wait(list(self._busy)):
                    proc, item, attempt = self._busy.pop(conn)
                    try:
                        kind, value = conn.recv()
                    except (EOFError, OSError):  # the process died holding the item: run it again elsewhere
                        self.retried += 1
                        proc.kill()
                        idle.append(self._replace(proc))
                        if (failed := lost(queue, item, attempt)) is not None:
                            yield failed
                        continue
                    idle.append(proc)
                    if kind == "raise":
                        raise value
                    yield value
        finally:
            for proc, _, _ in list(self._busy.values()):  # stopped early: what they hold belongs to no one now
                proc.kill()
                self.procs.remove(proc)
            self._busy.clear()

    def close(self) -> None:
        for proc in self.procs:  # all at once: each process takes about a second to exit
            proc.ask_to_stop()
        for proc in self.procs:
            proc.stop()
        self.procs = []
