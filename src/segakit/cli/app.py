"""The ``segakit`` Typer app and its entry point; each sub-command lives in its own module of this package.

Bad input prints one sentence and exits with status 2, without a traceback.
"""

from __future__ import annotations

import os
import sys

import typer

from segakit.cli import batch, demo, edit, generate, serve
from segakit.core.errors import UserError

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Library chatter (optional backends, deprecations) is not for the command line user.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

app = typer.Typer(
    name="segakit",
    help="Semantic control over text-to-image diffusion models (SEGA guidance, concept directions, editing).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root() -> None:
    """Semantic control over text-to-image diffusion models."""


app.command("generate")(generate.generate)
app.command("demo")(demo.demo)
app.command("serve")(serve.serve)
app.command("edit")(edit.edit)
app.command("batch")(batch.batch)


def main() -> None:
    """Console entry point: bad input prints one sentence and exits with status 2."""
    _register_subcommands()
    try:
        result = app(standalone_mode=False)
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        # Usage errors (click's, or typer's own copy of click): show the message, keep their exit code.
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            sys.exit(exc.exit_code)
        if type(exc).__name__ == "Abort":
            typer.echo("aborted", err=True)
            sys.exit(1)
        raise
    sys.exit(result if isinstance(result, int) else 0)


def _register_subcommands() -> None:
    from segakit.cli.directions import directions_app
    from segakit.cli.eval import eval_app
    from segakit.cli.world import world_app

    registered = {g.name for g in app.registered_groups}
    if "world" not in registered:
        app.add_typer(world_app, name="world")
    if "eval" not in registered:
        app.add_typer(eval_app, name="eval")
    if "directions" not in registered:
        app.add_typer(directions_app, name="directions")


if __name__ == "__main__":
    main()
