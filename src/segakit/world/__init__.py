"""segakit.world"""
