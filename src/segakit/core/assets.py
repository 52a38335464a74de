"""Where segakit's shipped files live: ``src/segakit/assets/<name>`` (models, oracle, directions)."""

from __future__ import annotations

from pathlib import Path


def asset_path(name: str) -> Path:
    """The folder of the shipped asset ``name`` (it may be absent or empty in a checkout without weights)."""
    return Path(__file__).parents[1] / "assets" / name
