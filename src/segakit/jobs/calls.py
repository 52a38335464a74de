"""In-memory work for the batch runner: a study's (or the direction learner's) pipeline calls, run where the runner
runs (this process, local worker processes, Ray actors), their arrays handed back instead of PNG files.

    runner = CallRunner(executor, "embedded")         # executor: InProcess(pipe=..., model=...), LocalWorkers, RayActors
    for r in runner.imap(generate_chunk, [(prompt, seeds[i : i + 16]) for i in range(0, len(seeds), 16)]):
        images[r.index] = r.value                     # in the order they finish; runner.map(...) keeps call order

A :class:`Call` is ``fn(pipe, *args)`` on the pipeline of ``model``: ``fn`` is a function defined at the top level
of a module (workers import it by name), ``args`` plain data (numbers, strings, dataclasses, numpy arrays). Each
call is one of the caller's own chunks, so a study computes exactly what it computes in one process, whichever
executor runs it (with the same torch thread count). A worker that dies has its call run again by another worker;
a call whose workers die :data:`segakit.jobs.worker.MAX_ATTEMPTS` times stops the run with one sentence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from segakit.core.errors import UserError


@dataclass(frozen=True)
class Call:
    """One unit of in-memory work: ``fn(pipe, *args)`` on the pipeline of ``model``; ``index`` is its place in the map."""

    model: str
    fn: Callable
    args: tuple
    index: int


@dataclass
class Returned:
    """What a call gave back: its index, the function's value, the seconds it ran (or the sentence saying why not)."""

    index: int
    value: object
    seconds: float
    error: str | None = None


class CallRunner:
    """Runs calls on a pipeline of ``model`` through an executor of :mod:`segakit.jobs.local` or :mod:`segakit.jobs.ray_actors`."""

    def __init__(self, executor, model: str) -> None:
        self.executor, self.model = executor, model

    def imap(self, fn: Callable, args: Sequence[tuple]) -> Iterator[Returned]:
        """``fn(pipe, *a)`` for every ``a`` in ``args``, yielded as each finishes (``.index``: the place of ``a``)."""
        calls = [Call(self.model, fn, tuple(a), i) for i, a in enumerate(args)]
        for returned in self.executor.run(calls):
            if returned.error is not None:
                raise UserError(
                    f"{getattr(fn, '__name__', 'a call')} #{returned.index} could not run: {returned.error}"
                )
            yield returned

    def map(
        self, fn: Callable, args: Sequence[tuple], progress: Callable[[Returned], None] | None = None
    ) -> list[Returned]:
        """Every call's :class:`Returned`, in the order of ``args``; ``progress(r)`` as each one finishes."""
        out: list[Returned | None] = [None] * len(args)
        for returned in self.imap(fn, args):
            out[returned.index] = returned
            if progress:
                progress(returned)
        return out  # type: ignore[return-value]
