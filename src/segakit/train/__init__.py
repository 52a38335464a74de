"""segakit.train: training recipes for the embedded model's parts, one readable file each (nanoGPT style).

``python -m segakit.train`` runs the stages in order, resuming what is done. See docs/training.md.
"""
