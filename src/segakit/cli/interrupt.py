"""Ctrl-C on the command line: exit status 130 and one line, at any moment, with nothing partial left.

Python's own ``KeyboardInterrupt`` is caught and reworded by some libraries (click prints an empty line and
turns it into ``Abort``); the handler installed here raises :class:`Interrupted` instead, which no library
catches. Files are written atomically (``segakit.core.atomic``) and the output checks remove what they
create, so an interrupted run leaves only complete files. The flag lives in :mod:`segakit.core.interrupt`, where
the atomic writer reads it: after a Ctrl-C that a library swallowed, no new file is committed.
"""

from __future__ import annotations

import os
import signal
import sys

from segakit.core import interrupt as flag
from segakit.core.interrupt import Interrupted

__all__ = ["Interrupted", "exit_interrupted", "exit_at_once", "install", "received", "restore"]


def _raise(signum, frame) -> None:
    flag.mark()
    raise Interrupted


def received() -> bool:
    """Whether Ctrl-C came during this command. A library can catch the interruption and fail another way (a lazy
    import interrupted half-way raises RuntimeError on the next access) or carry on as if nothing came, so an error,
    or the end of the command, after a Ctrl-C is the Ctrl-C."""
    return flag.received()


def install():
    """Make Ctrl-C raise :class:`Interrupted` (a new command: no Ctrl-C yet); returns the handler it replaced."""
    flag.clear()
    return signal.signal(signal.SIGINT, _raise)


def restore(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGINT, previous)


def exit_interrupted() -> None:
    """Print the one line and exit with 130; a second Ctrl-C while Python shuts down is ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        sys.stderr.write("interrupted\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    sys.exit(130)


def exit_at_once(signum=None, frame=None) -> None:
    """SIGINT handler for after the command (Python shutting down): the one line and 130, at once. Raising there
    would print a traceback from whatever runs at exit; the command's files are complete by then."""
    try:
        os.write(2, b"interrupted\n")
    except OSError:
        pass
    os._exit(130)
