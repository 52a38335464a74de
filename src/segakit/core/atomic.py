"""Atomic file output: a file is either absent or complete, never half written."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from segakit.core import interrupt
from segakit.core.errors import UserError


def ensure_writable_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if needed and check, by creating a file, that files can be written in it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"Cannot create output folder {str(path)!r}: {exc.strerror or exc}.") from None
    if not path.is_dir():
        raise UserError(f"Output folder {str(path)!r} is not a folder; choose a folder you can write to.")
    try:  # create a file to know (os.access says yes to root on read-only and pseudo file systems)
        fd, probe = tempfile.mkstemp(prefix=".segakit-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(
            f"Output folder {str(path)!r} is not writable ({exc.strerror or exc}); choose a folder you can write to."
        ) from None
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: Path | str, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` in one rename.

    On any exception the temporary file is removed and ``path`` is left untouched; after a Ctrl-C (even one a
    library swallowed, :mod:`segakit.core.interrupt`) nothing is committed.
    """
    path = Path(path)
    ensure_writable_dir(path.parent if str(path.parent) else Path("."))
    try:  # creating the file is the test of writability (os.access says yes to root on read-only places)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise UserError(
            f"Cannot write {str(path)!r}: {exc.strerror or exc}; choose a folder you can write to."
        ) from None
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a finished file gets the usual permissions
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        interrupt.check()  # a Ctrl-C a library swallowed: commit nothing more
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_append(path: Path | str, keep=None) -> Iterator[IO]:
    """Open ``path`` for appending, atomically: the new file holds the old lines (those ``keep(line)`` says yes to,
    every one when ``keep`` is None) and then what is written; on any failure the old file stays as it was.

    The labels files of numbered outputs (``labels.jsonl``, ``pairs.jsonl``) grow this way and are never rewritten.
    """
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        if path.is_file():
            with open(path, "rb") as old:
                for line in old:
                    if keep is None or keep(line):
                        fh.write(line if line.endswith(b"\n") else line + b"\n")
        yield fh


def write_json(path: Path | str, data, indent: int = 1) -> Path:
    """``data`` as JSON at ``path``, written atomically (its folder made if missing); returns the path."""
    import json

    with atomic_open(path, "w") as fh:
        json.dump(data, fh, indent=indent)
    return Path(path)
