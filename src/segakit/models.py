"""Moved (segakit 0.2): loading to :mod:`segakit.core.loading`, edit defaults to :mod:`segakit.sega.defaults`.

This module goes in segakit 0.3. Its ``load_pipeline`` still returns a :class:`SegaPipeline` by default.
"""

from __future__ import annotations

import warnings

from segakit.core.loading import EMBEDDED, PICKLE_SUFFIXES, embedded_path, resolve, vae_folder
from segakit.core.loading import load_pipeline as _load
from segakit.sega.defaults import EMBEDDED_EDIT, edit_defaults

__all__ = ["EMBEDDED", "EMBEDDED_EDIT", "PICKLE_SUFFIXES", "edit_defaults", "embedded_path", "load_pipeline", "resolve", "vae_folder"]

warnings.warn("segakit.models moved to segakit.core.loading (and segakit.sega.defaults); the old path goes in segakit 0.3.",
              DeprecationWarning, stacklevel=2)  # fmt: skip


def load_pipeline(name=EMBEDDED, pipeline_class=None, **kwargs):
    """As in segakit 0.1: ``pipeline_class`` defaults to :class:`segakit.SegaPipeline`."""
    from segakit.sega.pipeline import SegaPipeline

    return _load(name, pipeline_class or SegaPipeline, **kwargs)
