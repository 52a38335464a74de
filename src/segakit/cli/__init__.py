"""segakit.cli: the ``segakit`` command, one module per sub-command group.

``app`` (the Typer app, ``main``, shared options), ``generate``, ``demo``, ``world`` (``segakit world ...``),
``eval`` (``segakit eval ...``). Bad input prints one sentence and exits with status 2, without a traceback.
"""

from segakit.cli.app import app, main

__all__ = ["app", "main"]
