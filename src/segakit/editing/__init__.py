"""segakit.editing"""
