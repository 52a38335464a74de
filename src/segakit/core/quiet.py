"""A quiet library: notices that our own loading causes, and that no user can act on, are not printed.

Two come from loading a pipeline on a machine like the ones segakit is made for: transformers says, once per
class, that an image processor "requires torchvision (not installed)" and falls back to its PIL twin (segakit
does not depend on torchvision on purpose: docs/guide.md), and diffusers says that modules "should be kept in
float32: []" (an empty list) when ``from_pipe`` casts the components it was given. :func:`install` adds a
logging filter for exactly these two messages to the two loggers that emit them; it imports nothing (the
loggers are made by name before the libraries load) and is undone by SEGAKIT_VERBOSE=1. Everything else the
libraries say is left as it is; progress bars follow ``pipe.set_progress_bar_config`` (default: off,
:func:`segakit.core.loading.load_pipeline`).
"""

from __future__ import annotations

import logging
import os

NOTICES = {
    "transformers.utils.import_utils": ("requires torchvision (not installed)",),
    "diffusers.models.modeling_utils": ("should be kept in float32: [].",),
}


class _DropNotices(logging.Filter):
    def __init__(self, needles: tuple[str, ...]) -> None:
        super().__init__()
        self.needles = needles

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(n in message for n in self.needles)


def install() -> None:
    """Filter the notices of :data:`NOTICES` (once; nothing when SEGAKIT_VERBOSE is set)."""
    if os.environ.get("SEGAKIT_VERBOSE"):
        return
    for name, needles in NOTICES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNotices) for f in logger.filters):
            logger.addFilter(_DropNotices(needles))
