"""The editing study's edits as batch-runner calls (:mod:`segakit.jobs.calls`): one call per chain of edits that
must run in order (a single-turn edit alone; a multi-turn session's turns from its first uncached one on, each
editing the result of the one before), so ``--workers N`` and ``--ray`` spread the chains over processes or
actors while every edit computes exactly what it computes in one process.

A worker's pipeline is the runner's (a :class:`segakit.sega.pipeline.SegaPipeline` of the study's model); the
first chain a worker runs wraps it once as an :class:`segakit.editing.pipeline.EditPipeline` with the study's
caption writer (on an SD3 or FLUX model, a :class:`segakit.editing.flow_pipeline.FlowEditPipeline`). In this process the study's own edit pipeline is used as it is. The methods are kept per process
(the Methods object holds what it builds on first use, such as diffusers' LEDITS++ peer).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segakit.eval.editing_study.config import EditingStudyConfig
from segakit.eval.editing_study.items import Turn, image_of
from segakit.eval.editing_study.methods import MethodResult, Methods

_WRAPPED: dict[tuple, Methods] = {}  # per process: (id of the pipeline, model, caption writer, config) -> Methods


@dataclass(frozen=True)
class Chain:
    """Edits of ``method`` on ``turns`` in order, the first on ``input_u8`` ((3, H, W) uint8), each later one on the
    result of the one before."""

    method: str
    turns: tuple[Turn, ...]
    input_u8: np.ndarray


def methods_for(pipe, model: str, caption_writer: str | None, cfg: EditingStudyConfig) -> Methods:
    """The study's methods on ``pipe`` (an edit pipeline as it is, a runner's pipeline wrapped), made once per
    process and study so that what they build on first use (diffusers' LEDITS++ peer) is kept."""
    from segakit.editing.flow_pipeline import FlowEditPipeline
    from segakit.editing.pipeline import EditPipeline

    key = (id(pipe), model, caption_writer, cfg)
    if key not in _WRAPPED:
        _WRAPPED.clear()  # one study at a time: drop what an earlier one made
        if isinstance(pipe, (EditPipeline, FlowEditPipeline)):
            edit = pipe
        else:
            edit = EditPipeline.from_pipe(
                pipe, caption_writer=_writer(Path(caption_writer) if caption_writer else None), model_name=model
            )
        _WRAPPED[key] = Methods(edit, cfg)
    return _WRAPPED[key]


def _writer(folder: Path | None):
    if folder is None:
        return None
    from segakit.editing.caption_writer import CaptionWriter

    return CaptionWriter.from_pretrained(folder)


def edit_arrays(methods: Methods, method: str, turn: Turn, input_u8: np.ndarray) -> dict[str, np.ndarray]:
    """One edit, as the arrays the study caches: the result, its seconds, what the method used, stage times."""
    r: MethodResult = methods.run(
        method, image_of(input_u8), turn.instruction, turn.source_caption, turn.target_caption
    )
    return {"image": r.image, "seconds": np.array(r.seconds), "captions_before": np.array(r.captions_before, dtype=str),
            "captions_after": np.array(r.captions_after, dtype=str), "concepts": np.array(r.concepts, dtype=str),
            "stage_names": np.array(list(r.stages), dtype=str), "stage_seconds": np.array(list(r.stages.values()), dtype=np.float64)}  # fmt: skip


def edit_chain(
    pipe, model: str, caption_writer: str | None, cfg: EditingStudyConfig, chain: Chain
) -> list[dict[str, np.ndarray]]:
    """A runner call: every edit of ``chain`` in order, each as :func:`edit_arrays` gives it."""
    methods = methods_for(pipe, model, caption_writer, cfg)
    out, current = [], chain.input_u8
    for turn in chain.turns:
        data = edit_arrays(methods, chain.method, turn, current)
        out.append(data)
        current = data["image"]
    return out
