"""segakit.sega: semantic guidance (Brack et al., "SEGA", NeurIPS 2023).

``guidance`` (the paper's equations as small functions, :class:`Edit`, the momentum object),
``pipeline`` (:class:`SegaPipeline`), ``recorded`` (:class:`RecordedGuidance`), ``editspec`` (the CLI's
``+glasses:s=6`` syntax), ``defaults`` (per-model edit defaults), ``demo`` (the demo gallery).
"""
