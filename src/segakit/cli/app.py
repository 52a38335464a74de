"""The ``segakit`` Typer app and its entry point; each sub-command lives in its own module of this package.

Bad input prints one sentence and exits with status 2, without a traceback.
"""

from __future__ import annotations

import os
import sys

import typer

from segakit.cli.quiet import quiet_environment

quiet_environment()  # before the sub-commands import the libraries that read it

from segakit.cli import batch, demo, edit, generate, serve  # noqa: E402
from segakit.cli.interrupt import Interrupted  # noqa: E402
from segakit.core.errors import UserError  # noqa: E402

app = typer.Typer(
    name="segakit",
    help="Semantic control over text-to-image diffusion models (SEGA guidance, concept directions, editing).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from segakit import __version__

        typer.echo(f"segakit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Semantic control over text-to-image diffusion models."""


app.command("generate")(generate.generate)
app.command("demo")(demo.demo)
app.command("serve")(serve.serve)
app.command("edit")(edit.edit)
app.command("batch")(batch.batch)


def main() -> None:
    """Console entry point: bad input prints one sentence and exits with status 2."""
    from segakit.cli.interrupt import exit_interrupted
    from segakit.cli.options import default_threads, readable_help

    if not os.environ.get("SEGAKIT_VERBOSE"):
        import warnings

        warnings.simplefilter("ignore")
        _quiet_loaded_libraries()
    from segakit.cli.options import set_quiet
    from segakit.core.errors import set_spelling

    set_quiet(False)
    set_spelling("cli")  # sentences name the flags the user typed (segakit.core.errors)
    try:
        default_threads(sys.argv)
        _register_subcommands()
        command = typer.main.get_command(app)
        readable_help(command)
        result = command.main(prog_name="segakit", standalone_mode=False)
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except (KeyboardInterrupt, Interrupted):
        exit_interrupted()
    except Exception as exc:
        # Usage errors (click's, or typer's own copy of click): show the message, keep their exit code.
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            sys.exit(exc.exit_code)
        if type(exc).__name__ == "Abort":
            if isinstance(exc.__context__, KeyboardInterrupt):
                exit_interrupted()
            typer.echo("aborted", err=True)
            sys.exit(1)
        raise
    finally:
        set_spelling("python")  # an in-process caller (a test) goes on in Python
    sys.exit(result if isinstance(result, int) else 0)


def _quiet_loaded_libraries() -> None:
    """Where diffusers or transformers were imported before this module set their variables (a caller in-process)."""
    for name in ("diffusers.utils.logging", "transformers.utils.logging"):
        module = sys.modules.get(name)
        if module is not None:
            module.disable_progress_bar()
            module.set_verbosity_error()


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
