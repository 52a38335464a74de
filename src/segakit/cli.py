"""The ``segakit`` command line: ``generate`` and ``world``."""

from __future__ import annotations

import sys

import typer

from segakit.errors import UserError

app = typer.Typer(
    name="segakit",
    help="Semantic control over text-to-image diffusion models (SEGA guidance, concept directions, editing).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def main() -> None:
    """Console entry point: bad input prints one sentence and exits with status 2."""
    _register_subcommands()
    try:
        app(standalone_mode=False)
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(2)
        raise


def _register_subcommands() -> None:
    # Each subcommand group lives beside the code it drives.
    from segakit import generate_cli  # noqa: F401  (registers `generate`)

    try:
        from segakit.world.cli import world_app
    except ImportError:
        return
    app.add_typer(world_app, name="world")


if __name__ == "__main__":
    main()
