"""Running batches on a Ray cluster: one actor per worker, each loading the model once and taking batches.

Fault tolerance: an actor that dies (its process killed, its node lost) has the batch it held put back at the
front of the queue and a fresh actor started in its place; the batch runs again elsewhere. Actors only return
PNG bytes (or a call's arrays) and the driver writes each file once, so a batch that ran twice writes nothing twice
and a batch that was lost is run again. A batch whose actor dies ``MAX_ATTEMPTS`` times comes back as an error.
A run that stops early (an exception, Ctrl-C) kills the actors still working and starts fresh ones in their place,
so what they held never mixes into a later run.

Ray is optional (``pip install 'segakit[ray]'``); without it :func:`require_ray` says so in one sentence.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

from segakit.core.errors import UserError
from segakit.jobs.batching import Batch
from segakit.jobs.calls import Call
from segakit.jobs.worker import MAX_ATTEMPTS, Worker, WorkerConfig, lost

__all__ = ["MAX_ATTEMPTS", "BatchActor", "RayActors", "connect", "require_ray"]


def require_ray():
    """The ``ray`` module, or a UserError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError(
            "--ray needs Ray, which is not installed here; install it with pip install 'segakit[ray]'."
        ) from None
    return ray


class BatchActor:
    """The actor's body: a :class:`Worker` living in the actor's process."""

    def __init__(self, config: WorkerConfig) -> None:
        import os

        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.worker = Worker(config)

    def run(self, item: Batch | Call):
        return self.worker.do(item)

    def pid(self) -> int:
        import os

        return os.getpid()


def connect(address: str, cpus: int | None = None) -> bool:
    """Join the cluster at ``address`` ("auto": the one this machine belongs to; "local": start one here with
    ``cpus`` CPUs). Returns whether this call started Ray (and so should shut it down)."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    quiet = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address == "local":
        ray.init(num_cpus=cpus, **quiet)
        return True
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"--ray {address!r}: no Ray cluster could be joined ({first}); start one with ray start --head, "
                        "or use --ray local to start one in this process.") from None  # fmt: skip
    return True


class RayActors:
    """``actors`` Ray actors (one CPU each, ``config.threads`` torch threads; ``gpus`` each if asked), fed one batch at a time."""

    def __init__(self, actors: int, config: WorkerConfig | None = None, gpus: float = 0.0) -> None:
        ray = require_ray()
        self.ray = ray
        config = config or WorkerConfig()
        self.config = config
        self.remote = ray.remote(BatchActor).options(num_cpus=1, num_gpus=gpus, max_restarts=0, max_task_retries=0)
        self.actors = [self.remote.remote(config) for _ in range(actors)]
        self.retried = 0  # batches put back because their actor died
        self._inflight: dict = {}

    def in_flight(self) -> list:
        """The actors working on a batch right now (not those whose result is waiting to be collected)."""
        refs = list(self._inflight)
        if not refs:
            return []
        _, working = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        return [self._inflight[ref][0] for ref in working]

    def _replace(self, actor):
        self.actors.remove(actor)
        fresh = self.remote.remote(self.config)
        self.actors.append(fresh)
        return fresh

    def run(self, items: Iterable[Batch | Call]) -> Iterator:
        ray = self.ray
        queue = deque((b, 1) for b in items)
        idle = list(self.actors)
        try:
            while queue or self._inflight:
                while queue and idle:
                    actor, (item, attempt) = idle.pop(0), queue.popleft()
                    self._inflight[actor.run.remote(item)] = (actor, (item, attempt))
                ready, _ = ray.wait(list(self._inflight), num_returns=1)
                actor, (item, attempt) = self._inflight.pop(ready[0])
                try:
                    result = ray.get(ready[0])
                except ray.exceptions.RayActorError:
                    self.retried += 1
                    idle.append(self._replace(actor))
                    if (failed := lost(queue, item, attempt)) is not None:
                        yield failed
                    continue
                idle.append(actor)
                yield result
        finally:
            for actor, _ in list(self._inflight.values()):  # stopped early: what they hold belongs to no one now
                try:
                    ray.kill(actor)
                except Exception:  # an actor already gone
                    pass
                self._replace(actor)
            self._inflight.clear()

    def close(self) -> None:
        for actor in self.actors:
            try:
                self.ray.kill(actor)
            except Exception:  # an actor already gone
                pass
        self.actors = []
