"""A JOBS file: JSON Lines, one generation per line with the fields a segakit PNG stores.

    {"prompt": "a face of a woman", "seed": 3, "edits": ["+glasses:s=6"]}
    {"prompt": "a face of a man", "seed": 0, "num_images": 4, "edits": [{"prompt": "beard", "reverse": true}]}

Every line is normalised (defaults filled in: model, steps, the model's edit defaults; numbers to their
types) so that two lines meaning the same image get the same :func:`job_id`; a line with ``num_images``
N becomes N jobs with seeds ``seed`` .. ``seed + N - 1``, as ``segakit generate -n N`` numbers them.
A line that does not parse, names an unknown field or model, or holds a value out of range gives one
sentence naming its line number (:class:`LineError`); the other lines still make jobs.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, fields, replace
from pathlib import Path

from segakit.core.errors import UserError, spelling
from segakit.core.loading import resolve
from segakit.jobs.generate import GenerationParams, LoraWeights
from segakit.sega.defaults import default_steps, edit_defaults
from segakit.sega.editspec import parse_edit
from segakit.sega.guidance import Edit

FIELDS = [f.name for f in fields(GenerationParams) if f.name != "sweep"]
INTS = ("seed", "num_images", "steps", "height", "width", "guidance_refresh")
FLOATS = ("guidance", "true_cfg", "eta", "momentum_scale", "momentum_beta", "library_strength")
STRINGS = ("prompt", "model", "negative_prompt", "quantile_over", "apply_guidance", "fair", "library")
BOOLS = ("safe", "enhance")
STRING_LISTS = ("directions", "embeddings")
EDIT_FIELDS = {f.name for f in fields(Edit)}


@dataclass(frozen=True)
class Job:
    """One image: its normalised parameters (``num_images`` 1), its id, and the JOBS line it came from."""

    id: str
    params: GenerationParams
    line: int

    @property
    def file(self) -> str:
        return f"{self.id}.png"


@dataclass(frozen=True)
class LineError:
    """A JOBS line that makes no job: its number and one sentence saying why."""

    line: int
    message: str

    def sentence(self, name: str = "JOBS") -> str:
        return f"{name} line {self.line}: {self.message}"


def job_id(params: GenerationParams) -> str:
    """A stable id for a job: a hash of its normalised fields (16 hex digits)."""
    text = json.dumps(params.to_json(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _int(name: str, value) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and not value.is_integer())
    ):
        raise UserError(f"{name} {value!r} is not a whole number.")
    return int(value)


def _float(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{name} {value!r} is not a finite number.")
    return float(value)


def _edit(value, model: str) -> Edit:
    """An edit string (``"+glasses:s=6"``) or object (``{"prompt": "glasses", "scale": 6}``), with the model's defaults."""
    if isinstance(value, str):
        edit = parse_edit(value)
    elif isinstance(value, dict):
        unknown = sorted(set(value) - EDIT_FIELDS)
        if unknown:
            raise UserError(
                f"edit {value!r} has unknown field {unknown[0]!r}; edit fields are {', '.join(sorted(EDIT_FIELDS))}."
            )
        if not isinstance(value.get("prompt"), str) or not value["prompt"].strip():
            raise UserError(f'edit {value!r} names no concept; give its "prompt", e.g. {{"prompt": "glasses"}}.')
        edit = Edit(**value)
    else:
        raise UserError(f'edit {value!r} is neither an edit string such as "+glasses:s=6" nor an object.')
    edit = edit.with_defaults(edit_defaults(model))
    numbers = {k: _float(f"edit {edit.prompt!r} {k}", getattr(edit, k)) for k in ("scale", "threshold", "weight")}
    counts = {
        k: _int(f"edit {edit.prompt!r} {k}", getattr(edit, k))
        for k in ("warmup", "cooldown")
        if getattr(edit, k) is not None
    }
    if not isinstance(edit.reverse, bool):
        raise UserError(f"edit {edit.prompt!r} reverse {edit.reverse!r} is not true or false.")
    return replace(edit, **numbers, **counts)


def _lora(value) -> LoraWeights:
    if isinstance(value, str):
        head, sep, tail = value.rpartition(":")
        if sep and Path(head).suffix:
            return LoraWeights(head, _float(f"lora {value!r} scale", _number(value, tail)))
        return LoraWeights(value, 1.0)
    if isinstance(value, dict) and isinstance(value.get("path"), str) and set(value) <= {"path", "scale"}:
        return LoraWeights(value["path"], _float("lora scale", value.get("scale", 1.0)))
    raise UserError(f'lora {value!r} is neither "FILE[:SCALE]" nor an object with "path" (and "scale").')


def _number(spec: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UserError(f"lora {spec!r}: scale {text!r} is not a number; write FILE or FILE:SCALE.") from None


def normalise(data: dict) -> list[GenerationParams]:
    """One JOBS line (a JSON object) to the parameters of its jobs (one per image); bad values raise UserError."""
    if not isinstance(data, dict):
        raise UserError(
            f'the line is {type(data).__name__} JSON, not an object such as {{"prompt": "a face", "seed": 0}}.'
        )
    unknown = [k for k in data if k not in FIELDS]
    if unknown:
        what = (
            "sweep renders a strip, not one image; write one line per scale"
            if unknown[0] == "sweep"
            else f"fields are {', '.join(FIELDS)}"
        )
        raise UserError(f"unknown field {unknown[0]!r}; {what}.")
    if "prompt" not in data:
        raise UserError('no "prompt" field; every job needs one (an empty string is allowed with edits).')
    values = dict(data)
    for name in STRINGS:
        if values.get(name) is not None and not isinstance(values[name], str):
            raise UserError(f"{name} {values[name]!r} is not a string.")
    for name in BOOLS:
        if name in values and not isinstance(values[name], bool):
            raise UserError(f"{name} {values[name]!r} is not true or false.")
    for name in INTS:
        if values.get(name) is not None:
            values[name] = _int(name, values[name])
    if values.get("edit_refresh") not in (None, "auto"):  # a whole number, or "auto"
        values["edit_refresh"] = _int("edit_refresh", values["edit_refresh"])
    for name in FLOATS:
        if values.get(name) is not None:
            values[name] = _float(name, values[name])
    for name in ("edits", "loras", *STRING_LISTS):
        if name in values and not isinstance(values[name], list):
            raise UserError(f"{name} {values[name]!r} is not a list.")
    for name in STRING_LISTS:
        if any(not isinstance(v, str) for v in values.get(name, [])):
            raise UserError(f"{name} {values[name]!r} holds something other than strings.")
    model = values.get("model") or "embedded"
    resolve(model)  # an unknown model is refused here, before any worker loads it
    values["model"] = model
    values.setdefault("steps", default_steps(model))
    values["edits"] = [_edit(e, model) for e in values.get("edits", [])]
    values["loras"] = [_lora(x) for x in values.get("loras", [])]
    params = GenerationParams(**values)
    params.validate()
    return [replace(params, seed=params.seed + i, num_images=1) for i in range(params.num_images)]


def parse_jobs(text: str) -> tuple[list[Job], list[LineError]]:
    """The jobs of a JOBS file's text (in line order, each id once) and the lines that made none."""
    jobs: dict[str, Job] = {}
    errors: list[LineError] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            errors.append(LineError(number, f"not valid JSON ({exc.msg} at column {exc.colno})."))
            continue
        try:
            made = normalise(data)
        except UserError as exc:
            with spelling("json"):  # a JOBS line names JSON fields: the sentence names them so
                errors.append(LineError(number, str(exc)))
            continue
        except TypeError as exc:  # a dataclass refusing a value of the wrong shape
            errors.append(LineError(number, f"a value has the wrong type ({exc})."))
            continue
        for params in made:
            job = Job(job_id(params), params, number)
            jobs.setdefault(job.id, job)
    return list(jobs.values()), errors


def read_jobs(path: str | Path) -> tuple[list[Job], list[LineError]]:
    """:func:`parse_jobs` of the file at ``path`` (a missing or unreadable file is a UserError)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f'JOBS file {str(path)!r} does not exist; write one JSON object per line, e.g. {{"prompt": "a face", "seed": 0}}.'
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"JOBS file {str(path)!r} cannot be read as UTF-8 text ({exc}).") from None
    return parse_jobs(text)


def params_id(meta: dict) -> str | None:
    """The id of the job whose PNG carries ``meta`` (its stored parameters), or None if they are not a job's."""
    try:
        params = GenerationParams.from_json(meta)
    except (UserError, TypeError, ValueError):
        return None
    return job_id(replace(params, num_images=1))
