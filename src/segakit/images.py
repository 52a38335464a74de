"""Moved to segakit.core.images (segakit 0.2); this alias goes in 0.3."""
from segakit._moved import alias

alias(__name__, "segakit.core.images")
