"""segakit.cli: the ``segakit`` command, one module per sub-command group.

``app`` (the module with the Typer app: ``from segakit.cli.app import app``; ``main``, shared options), ``generate``, ``demo``, ``world`` (``segakit world ...``),
``eval`` (``segakit eval ...``). Bad input prints one sentence and exits with status 2, without a traceback;
Ctrl-C exits with 130 and one line, also while the command is still starting (this module imports nothing
heavy before the handler is in place).
"""

__all__ = ["console", "main"]


def main() -> None:
    """The ``segakit`` console script."""
    import sys

    from segakit.cli.interrupt import Interrupted, exit_interrupted, install, received, restore

    previous = install()
    torch = sys.modules.get("torch")  # an in-process caller (tests) keeps its own thread count
    threads = torch.get_num_threads() if torch is not None else None
    try:
        from segakit.cli.app import main as run_app

        run_app()
    except (KeyboardInterrupt, Interrupted):
        exit_interrupted()
    except (Exception, SystemExit) as exc:
        if received() and not (isinstance(exc, SystemExit) and exc.code == 130):  # 130: already reported
            exit_interrupted()  # the interruption, caught and reworded by a library on its way out
        raise
    else:
        if received():  # the interruption, swallowed by a library that then carried on
            exit_interrupted()
    finally:
        restore(previous)
        if threads is not None:
            torch.set_num_threads(threads)


def console() -> None:
    """The ``segakit`` console script and ``python -m segakit``: :func:`main`, after which a Ctrl-C while Python shuts
    down ends the process at once with 130 and the one line instead of a traceback from an exit handler."""
    try:
        main()
    finally:
        import signal

        from segakit.cli.interrupt import exit_at_once

        signal.signal(signal.SIGINT, exit_at_once)
