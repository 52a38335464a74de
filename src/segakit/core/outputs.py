"""Where a command's output files go, decided and checked before any work starts: segakit's one output policy.

Every command that writes follows it (``generate``, ``edit``, ``directions learn``, ``world sample`` / ``pairs``,
``demo``, ``batch``, every ``eval ... --out``, the training recipes' ``--export``; docs/guide.md, "Output files";
``tests/test_output_policy.py`` walks every command with an output option and proves it):

- a name ending in ``.png`` is one file; with several images it is numbered (``x-000.png``, ...);
  any other name is a folder, the images in it numbered ``image-000.png``, ...;
- a name ending in another file extension (``.jpg``, ``.webp``, ...) is refused: segakit writes PNGs;
- a folder where a file is meant, or a file where a folder is meant, is refused;
- an existing file is never replaced unless ``overwrite`` is set; numbered names continue after the
  highest number already there (with ``overwrite`` they start again at 000);
- a folder of named results (a report, a gallery) is refused while it holds one of them, unless ``overwrite``;
- a series of numbered files (``world sample``'s ``000000.png`` ...) continues after the highest number there,
  and its labels file gets the new records appended (:func:`segakit.core.atomic.atomic_append`), never rewritten;
- a name with a file extension where a folder is meant (``--out ws.png`` for a folder of samples) is refused;
- the defaults write under ``out/``;
- the place is checked by creating a file there (not with ``os.access``, which says yes to root even where
  nothing can be written), and every folder made for the check is removed again, so a refused or
  interrupted run leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from segakit.core.errors import UserError

# names that mean "a file of another kind"; other suffixes (run.v2) are folder names
OTHER_FILE_SUFFIXES = frozenset(
    ".jpg .jpeg .webp .gif .bmp .tif .tiff .avif .heic .ppm .svg .pdf .txt .json .jsonl .csv .safetensors .pt .ckpt".split()
)


def probe_writable(folder: Path, what: str) -> None:
    """Check that a file can be created in ``folder`` by creating (and removing) one.

    Missing folders are created for the check and removed afterwards; a file in the way, a read-only or
    pseudo file system (``/proc``) or a full disk is a :class:`UserError` naming ``what``.
    """
    folder = Path(folder) if str(folder) else Path(".")
    missing: list[Path] = []
    here = folder
    while not here.exists() and here != here.parent:
        missing.append(here)
        here = here.parent
    if here.exists() and not here.is_dir():
        raise UserError(f"{what}: {str(here)!r} is a file, so no folder can be made inside it; choose another place.")
    created: list[Path] = []
    try:
        for path in reversed(missing):
            path.mkdir()
            created.append(path)
        fd, probe = tempfile.mkstemp(prefix=".segakit-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(
            f"{what}: nothing can be written in {str(folder)!r} ({exc.strerror or exc}); choose a folder you can write to."
        ) from None
    finally:
        for path in reversed(created):
            with contextlib.suppress(OSError):
                path.rmdir()


@dataclass(frozen=True)
class NumberedPaths(Sequence):
    """``folder/stem-NNN.png`` for NNN = first, first + 1, ...: a million names without a list of a million paths."""

    folder: Path
    stem: str
    first: int
    count: int

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.count))]
        if not -self.count <= i < self.count:
            raise IndexError(i)
        return self.folder / f"{self.stem}-{self.first + (i % self.count):03d}.png"


def _next_number(folder: Path, stem: str) -> int:
    """One more than the highest ``stem-NNN.png`` in ``folder`` (0 when there is none)."""
    if not folder.is_dir():
        return 0
    pattern = re.compile(rf"^{re.escape(stem)}-(\d+)\.png$")
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := pattern.match(p.name))]
    return max(numbers, default=-1) + 1


def plan_images(
    out: Path, count: int, stem: str = "image", overwrite: bool = False, what: str = "--out"
) -> Sequence[Path]:
    """The ``count`` PNG paths ``out`` stands for, checked; nothing is created."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix in OTHER_FILE_SUFFIXES:
        raise UserError(
            f"{what} {str(out)!r} ends in {out.suffix}; segakit writes PNG images: use a name ending in .png, or a folder."
        )
    if suffix == ".png":
        if out.is_dir():
            raise UserError(f"{what} {str(out)!r} is a folder, but a name ending in .png means one file; "
                            f"give a file inside it ({str(out / (stem + '.png'))!r}) or a folder name without .png.")  # fmt: skip
        folder = out.parent
        if count == 1:
            if out.exists() and not overwrite:
                raise UserError(
                    f"{what} {str(out)!r} exists already; pass --overwrite to replace it, or choose another name."
                )
            probe_writable(folder, what)
            return [out]
        stem = out.stem
    else:
        if out.exists() and not out.is_dir():
            raise UserError(
                f"{what} {str(out)!r} is a file, not a folder; give a folder, or a name ending in .png for one image."
            )
        folder = out
    # numbered names: new ones start after the highest there, so none exists; with overwrite from 000
    first = 0 if overwrite else _next_number(folder, stem)
    if overwrite and folder.is_dir():
        pattern = re.compile(rf"^{re.escape(stem)}-(\d+)\.png$")
        for p in folder.iterdir():
            m = pattern.match(p.name)
            if m and p.is_dir() and int(m.group(1)) < count:
                raise UserError(f"{what}: {str(p)!r} is a folder; move it or choose another output name.")
    probe_writable(folder, what)
    return NumberedPaths(folder, stem, first, count)


def plan_file(path: Path, suffix: str, what: str, overwrite: bool = False) -> Path:
    """One output file of kind ``suffix`` (e.g. ``.safetensors``) at ``path``, checked; nothing is created."""
    path = Path(path)
    if path.suffix.lower() != suffix:
        raise UserError(
            f"{what} {str(path)!r} does not end in {suffix}; name the file e.g. {str(path.with_suffix(suffix))!r}."
        )
    if path.is_dir():
        raise UserError(f"{what} {str(path)!r} is a folder; give a file name ending in {suffix}.")
    if path.exists() and not overwrite:
        raise UserError(f"{what} {str(path)!r} exists already; pass --overwrite to replace it, or choose another name.")
    probe_writable(path.parent, what)
    return path


def plan_folder(out: Path, what: str = "--out", files: Sequence[str] = (), overwrite: bool = False) -> Path:
    """A folder that will hold the named ``files`` (a report, a gallery), checked; nothing is created.

    A name with a file extension (``ws.png``) or an existing file is refused (a folder is meant); one of
    ``files`` already there is refused unless ``overwrite``, so a finished run's results are never replaced unasked.
    """
    out = Path(out)
    if out.suffix.lower() in OTHER_FILE_SUFFIXES | {".png"}:
        raise UserError(f"{what} {str(out)!r} ends in {out.suffix}, which names a file, but {what} is a folder here; "
                        f"give a folder name such as {str(out.with_suffix(''))!r}.")  # fmt: skip
    if out.exists() and not out.is_dir():
        raise UserError(f"{what} {str(out)!r} is a file, not a folder; give a folder.")
    if not overwrite and out.is_dir():
        present = [name for name in files if (out / name).exists()]
        if present:
            raise UserError(f"{what} {str(out)!r} holds {present[0]} from an earlier run already; pass --overwrite to "
                            f"replace it, or choose another folder.")  # fmt: skip
    probe_writable(out, what)
    return out


def next_index(folder: Path, pattern: str) -> int:
    """One more than the highest number that ``pattern`` (a regular expression with one group of digits) finds
    among the names in ``folder``; 0 when there is none (or no folder)."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    rx = re.compile(pattern)
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := rx.match(p.name))]
    return max(numbers, default=-1) + 1


def plan_series(
    out: Path, pattern: str, start: int | None, count: int, overwrite: bool = False, what: str = "--out"
) -> int:
    """The first number of a series of ``count`` numbered files in folder ``out``, checked; nothing is created.

    ``start`` None continues after the highest number there; a given ``start`` whose range reaches a file already
    there is refused unless ``overwrite``.
    """
    plan_folder(out, what)
    following = next_index(out, pattern)
    if start is None:
        return following
    if not overwrite and Path(out).is_dir():
        rx = re.compile(pattern)
        taken = sorted(int(m.group(1)) for p in Path(out).iterdir() if (m := rx.match(p.name)))
        clash = [k for k in taken if start <= k < start + count]
        if clash:
            raise UserError(f"{what} {str(out)!r} holds number {clash[0]} already (--start {start}); leave --start out to "
                            f"continue after the last one ({following}), or pass --overwrite to replace them.")  # fmt: skip
    return start
