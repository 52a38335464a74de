"""segakit.world: the faces world -- procedural 64x64 portraits with exact labels, captions, edit pairs
and an attribute oracle. See docs/world.md.

Modules: ``schema`` (attributes, priors, Face, sample_face), ``render`` (render), ``captions`` (caption,
parse_caption), ``dataset`` (samples), ``pairs`` (pairs), ``oracle`` (Oracle), ``figures``; the command is ``segakit.cli.world``.
Imports stay lazy so that ``import segakit.world`` costs nothing.
"""
