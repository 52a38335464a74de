"""segakit.core: what every method shares.

``loading`` ("embedded" | hub id | folder -> a diffusers pipeline; safetensors only), ``conditioning``
(prompt encoding per model family), ``autoencoder`` (round trips through a VAE), ``images`` (PNGs that carry
their parameters, grids, strips), ``atomic`` (files that are either complete or absent), ``errors``
(:class:`UserError`). Nothing here imports a method, the world, or anything above.
"""
