"""segakit.train"""
