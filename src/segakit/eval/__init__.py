"""segakit.eval"""
