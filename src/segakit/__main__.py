"""``python -m segakit``: the same as the ``segakit`` command."""

from segakit.cli.app import main

main()
