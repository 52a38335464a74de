"""Whether Ctrl-C came: the flag the command line's SIGINT handler sets, readable below the command line.

A library may swallow the interruption (a bare ``except:`` on its import path, say) and carry on. The command line
then still ends with 130 (``segakit.cli``), and :func:`segakit.core.atomic.atomic_open` commits no file once the
flag is set and nothing is handling the interruption, so a swallowed Ctrl-C cannot leave a new output behind.
"""

from __future__ import annotations

import sys


class Interrupted(BaseException):  # noqa: N818 - it is not an error, the user asked for it
    """Ctrl-C (SIGINT) during a command."""


_received = False


def mark() -> None:
    """Record that Ctrl-C came."""
    global _received
    _received = True


def clear() -> None:
    global _received
    _received = False


def received() -> bool:
    """Whether Ctrl-C came during this command."""
    return _received


def check() -> None:
    """Raise :class:`Interrupted` if Ctrl-C came and no exception is on its way out: a library swallowed it. Clean-up
    that runs while the interruption propagates (``finally`` blocks, such as the batch runner's rewrite of
    ``results.jsonl``) sees it in :func:`sys.exc_info` and may still commit."""
    if _received and sys.exc_info()[0] is None:
        raise Interrupted
