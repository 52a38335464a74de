"""segakit.directions"""
