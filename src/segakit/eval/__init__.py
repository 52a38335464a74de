"""segakit.eval: studies judged by the faces world's oracle, one module (or package) per study.

``embedded_quality`` (the embedded model's quality table), ``sega_study`` (SEGA's face-attribute study:
``config``, ``measures``, ``run``, ``summary``, ``report``, ``figures``). Shared measures have their own
modules: ``targets`` (what an edit aims at), ``isolation``, ``ssim``, ``frechet``.
"""
