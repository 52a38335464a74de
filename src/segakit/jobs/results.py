"""``results.jsonl``: one line per job (id, file, JOBS line, seconds, batch size, oracle reading or error).

While a run goes, each finished job's line is appended (and flushed) right after its PNG is in place; when
the run ends, or is interrupted, the file is rewritten atomically in JOBS order, one line per job. A line
cut short by a crash is dropped when the next run reads the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO

from segakit.core.atomic import atomic_open

NAME = "results.jsonl"


def read(path: Path) -> dict[str, dict]:
    """The entries of a results file by job id (later lines win); unreadable lines are skipped."""
    entries: dict[str, dict] = {}
    if not path.is_file():
        return entries
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            entries[entry["id"]] = entry
    return entries


def write(path: Path, entries: list[dict]) -> None:
    """Replace the results file with ``entries``, one JSON object per line, in one atomic rename."""
    with atomic_open(path, "w") as fh:
        for entry in entries:
            fh.write(json.dumps(entry, sort_keys=True) + "\n")


class Journal:
    """Appends entries to the results file as jobs finish (each line flushed before the next job)."""

    def __init__(self, path: Path) -> None:
        self.fh: IO[str] = open(path, "a", encoding="utf-8")

    def add(self, entry: dict) -> None:
        self.fh.write(json.dumps(entry, sort_keys=True) + "\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()
