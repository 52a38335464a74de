"""Everything ``segakit generate`` can check before a model loads: outputs, edits, recorded guidance, memory, disk.

A run that would fail later fails here, with one sentence and nothing created (docs/guide.md, "When a run is refused").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from segakit.core.errors import UserError


@dataclass
class Plan:
    """What a checked run will do: the PNGs it writes, images per pipeline call, warnings to show first."""

    paths: Sequence[Path]
    chunk: int
    warnings: list[str]


def guidance_beside_png(params, png: Path):
    """``params`` read from ``png`` with a relative --apply-guidance path taken relative to the PNG's folder.

    PNGs written since segakit 0.2 store it that way; for older ones (relative to the folder they were made in)
    the current folder is tried when nothing is found beside the PNG.
    """
    if not params.apply_guidance or Path(params.apply_guidance).is_absolute():
        return params
    beside = Path(png).parent / params.apply_guidance
    if beside.is_file() or not Path(params.apply_guidance).is_file():
        return replace(params, apply_guidance=str(beside))
    return params


def preflight(
    params, out: Path, save_guidance: Path | None, overwrite: bool, device: str, dtype, from_png: bool = False
) -> Plan:
    """Check a generation job before anything loads; returns its :class:`Plan` or raises :class:`UserError`.

    ``from_png``: the job was read back from a PNG to be reproduced, so questionable edits are only warned about.
    """
    import torch

    from segakit.core.loading import model_key, resolve
    from segakit.core.memory import MAX_CHUNK, available_memory, check_disk, estimate, local_model_folder, plan_chunk
    from segakit.core.outputs import plan_file, plan_images
    from segakit.sega.defaults import edit_defaults
    from segakit.sega.editspec import check_edits
    from segakit.sega.recorded import RecordedGuidance, check_fits

    params.validate()
    warnings = check_edits(params.edits, edit_defaults(params.model), params.steps, strict=not from_png)
    if save_guidance is not None and params.sweep is not None:
        raise UserError("--save-guidance records one generation; it cannot be combined with --sweep.")
    if save_guidance is not None and params.guidance is not None and params.guidance <= 1:
        raise UserError(
            f"--save-guidance records semantic guidance, which needs --guidance above 1 (got {params.guidance:g})."
        )
    sweep = params.sweep is not None
    count = 1 if sweep else params.num_images
    if params.apply_guidance:
        recorded = RecordedGuidance.load(params.apply_guidance)
        check_fits(
            recorded,
            params.apply_guidance,
            params.steps,
            count,
            model_key(params.model),
            params.height,
            params.width,
            params.seed,
        )
    folder = local_model_folder(resolve(params.model))
    paths = plan_images(Path(out), count, "sweep" if sweep else "image", overwrite)
    if save_guidance is not None:
        plan_file(Path(save_guidance), ".safetensors", "--save-guidance", overwrite)
    chunk = min(count, MAX_CHUNK)
    if folder is not None:
        rows = 2 + len(params.edits) if params.guidance is None or params.guidance > 1 else 1
        held = save_guidance is not None or bool(params.apply_guidance)
        need = estimate(folder, params.height, params.width, rows, params.steps, held, torch.finfo(dtype).bits // 8)
        if need is not None:
            chunk = plan_chunk(need, count, available_memory(device), "-n")
            where = Path(out).parent if Path(out).suffix.lower() == ".png" else Path(out)
            check_disk(
                where, count, need.height * (1 if not sweep else 2), need.width * (len(params.sweep) if sweep else 1)
            )
    return Plan(paths, chunk, warnings)
