"""Opening an executor for ``--workers N`` / ``--ray ADDRESS`` (this process when they ask for nothing more), and
closing it: the workers stopped, Ray shut down if this started it. Used by the commands (``segakit.cli.runners``)
and by the training recipes that make images (``segakit.train.directions``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from segakit.jobs.local import InProcess, LocalWorkers
from segakit.jobs.worker import WorkerConfig


def wants_workers(workers: int | None, ray: str | None) -> bool:
    """Whether the options ask for more than this process."""
    return bool(ray) or (workers is not None and workers > 1)


@contextlib.contextmanager
def open_executor(workers: int | None, ray: str | None, config: WorkerConfig) -> Iterator:
    """The executor the options ask for, closed on leaving, and Ray shut down if this call started it."""
    if not ray:
        ex = LocalWorkers(workers, config) if wants_workers(workers, ray) else InProcess(config)
        try:
            yield ex
        finally:
            ex.close()
        return
    import ray as ray_module

    from segakit.jobs.ray_actors import RayActors, connect

    started = connect(ray, workers)
    try:
        actors = workers or max(1, int(ray_module.cluster_resources().get("CPU", 1)))
        ex = RayActors(actors, config, 1.0 if config.device.startswith("cuda") else 0.0)
        try:
            yield ex
        finally:
            ex.close()
    finally:
        if started:
            ray_module.shutdown()
