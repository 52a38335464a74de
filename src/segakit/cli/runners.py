"""Where a command's images are made: ``--workers N`` local processes or ``--ray ADDRESS`` actors (the batch runner's
executors, :mod:`segakit.jobs.local` and :mod:`segakit.jobs.ray_actors`). Shared by ``segakit batch``,
``segakit eval sega``, ``segakit eval directions``, ``segakit eval editing`` and ``segakit directions learn``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from segakit.core.errors import UserError
from segakit.jobs.executors import wants_workers

__all__ = ["RAY_HELP", "WORKERS_HELP", "check", "executor", "wants_workers"]

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


@contextlib.contextmanager
def executor(workers: int | None, ray: str | None, config) -> Iterator:
    """The executor the options ask for (this process when they ask for nothing more), checked first, closed on
    leaving, and Ray shut down if this call started it."""
    from segakit.jobs.executors import open_executor

    check(workers, ray)
    with open_executor(workers, ray, config) as ex:
        yield ex
