"""Where a command's images are made: ``--workers N`` local processes or ``--ray ADDRESS`` actors (the batch runner's
executors, :mod:`segakit.jobs.local` and :mod:`segakit.jobs.ray_actors`). Shared by ``segakit batch``,
``segakit eval sega``, ``segakit eval directions`` and ``segakit directions learn``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from segakit.core.errors import UserError

WORKERS_HELP = "Local worker processes that make the images (default 1: this process); with --ray, the number of actors (default: the cluster's CPUs)."
RAY_HELP = (
    "Make the images on Ray: 'auto' (the cluster this machine belongs to), an address such as ray://head:10001, or "
    "'local' (start Ray here). Needs pip install 'segakit[ray]'."
)


def check(workers: int | None, ray: str | None) -> None:
    """Refuse a worker count below 1, and --ray without Ray installed, in one sentence (before any model loads)."""
    if workers is not None and workers < 1:
        raise UserError(f"--workers {workers} is below 1; use 1 or more.")
    if ray is not None:
        from segakit.jobs.ray_actors import require_ray

        require_ray()


def wants_workers(workers: int | None, ray: str | None) -> bool:
    """Whether the options ask for more than this process."""
    return ray is not None or (workers is not None and workers > 1)


@contextlib.contextmanager
def executor(workers: int | None, ray: str | None, config) -> Iterator:
    """The executor the options ask for (this process when they ask for nothing more), closed on leaving, and
    Ray shut down if this call started it."""
    from segakit.jobs.local import InProcess, LocalWorkers

    check(workers, ray)
    if ray is None:
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
