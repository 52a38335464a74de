"""A quiet command line: library chatter a user cannot act on (optional backends such as torchvision or accelerate,
dtype notices, deprecations, component-loading progress bars) is not shown; ``SEGAKIT_VERBOSE=1`` shows it.

The variables must be set before the libraries are imported (tqdm and the libraries' loggers read them then), so
``segakit.cli.app`` calls :func:`quiet_environment` before it imports any sub-command.
"""

from __future__ import annotations

import os

QUIET = (("TRANSFORMERS_VERBOSITY", "error"), ("DIFFUSERS_VERBOSITY", "error"), ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
         ("TQDM_DISABLE", "1"), ("PYTHONWARNINGS", "ignore"))  # fmt: skip


def quiet_environment() -> None:
    """Set the variables that silence the libraries (unless the user set them, or ``SEGAKIT_VERBOSE``)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if os.environ.get("SEGAKIT_VERBOSE"):
        return
    for name, value in QUIET:
        os.environ.setdefault(name, value)
