"""segakit.directions: self-discovered h-space concept directions (Li et al., CVPR 2024).

``direction`` (:class:`Direction`: the vector, its provenance, save/load as safetensors, ``.at(strength)``),
``learn`` (:func:`learn_direction`: the model's own images teach the vector). Use::

    woman = Direction.load("woman.safetensors")
    pipe("a doctor", directions=[woman.at(1.0)])
"""

from segakit.directions.direction import AppliedDirection, Direction, parse_direction_spec
from segakit.directions.learn import LearnConfig, learn_direction

__all__ = ["AppliedDirection", "Direction", "LearnConfig", "learn_direction", "parse_direction_spec"]
