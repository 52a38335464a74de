"""segakit.eval.directions_study (being written)."""
