"""Inverting a rectified flow: from an image's latents back to the noise its sampling starts from.

Sampling a rectified flow is an ODE, ``dx/dsigma = v(x, sigma)``, integrated by the Euler steps of
``FlowMatchEulerDiscreteScheduler`` from sigma = 1 (noise) to 0 (image)::

    x_{i+1} = x_i + (sigma_{i+1} - sigma_i) v(x_i, sigma_i)                        sampling

Run backwards, each step uses the velocity at the end it knows (first-order inversion)::

    x_i = x_{i+1} + (sigma_i - sigma_{i+1}) v(x_{i+1}, sigma_{i+1})                inversion

RF-Inversion (Rout et al., "Semantic Image Inversion and Editing using Rectified Stochastic Differential
Equations", ICLR 2025) adds two controllers, both optional here (0 turns each off):

- ``gamma``, while inverting: pull towards a fixed Gaussian sample ``xi``, ``v <- v + gamma (u - v)`` with
  ``u = (xi - x) / (1 - sigma)``, so the inverted noise is more Gaussian (more editable, less faithful);
- ``eta``, while sampling the edit: pull back towards the source latents ``y0``, ``v <- v + eta (w - v)`` with
  ``w = (x - y0) / sigma`` (the velocity of the straight line from ``y0`` through ``x``), on the steps in ``[eta_start, eta_stop)``, so the edit keeps more of the source.
  With ``eta = 1`` on every step the sampling lands exactly on ``y0`` (the last Euler step divides by sigma).

The functions take a ``velocity(x, sigma) -> v`` callable (the family adapter's denoiser with classifier-free
guidance, see :mod:`segakit.editing.flow`), so they are the math and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def controlled(v: torch.Tensor, target: torch.Tensor, strength: float) -> torch.Tensor:
    """``v + strength (target - v)``: RF-Inversion's controller mixes the model's velocity with a target field."""
    return v if strength == 0 else v + strength * (target - v)


def invert(velocity: Velocity, x0: torch.Tensor, sigmas: torch.Tensor, gamma: float = 0.0,
           generator: torch.Generator | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:  # fmt: skip
    """The noise that ``sample`` (same ``sigmas``, decreasing to 0) maps back near ``x0``, and every
    intermediate latent (``path[i]`` at ``sigmas[i]``, ``path[-1]`` is ``x0``)."""
    xi = torch.randn(x0.shape, generator=generator, dtype=torch.float32).to(x0) if gamma else None
    x = x0
    path = [x0]
    for i in range(len(sigmas) - 2, -1, -1):
        s_hi, s_lo = sigmas[i], sigmas[i + 1]
        v = velocity(x, s_lo)
        if gamma:
            v = controlled(v, (xi - x) / (1 - s_lo), gamma)
        x = x + (s_hi - s_lo) * v
        path.append(x)
    path.reverse()
    return x, path


def sample(velocity: Velocity, x: torch.Tensor, sigmas: torch.Tensor, y0: torch.Tensor | None = None,
           eta: float = 0.0, eta_start: int = 0, eta_stop: int | None = None) -> torch.Tensor:  # fmt: skip
    """Euler sampling from ``x`` at ``sigmas[0]`` to ``sigmas[-1]`` (0), optionally pulled towards ``y0``."""
    stop = len(sigmas) - 1 if eta_stop is None else eta_stop
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        v = velocity(x, s)
        if eta and y0 is not None and eta_start <= i < stop:
            v = controlled(v, (x - y0) / s, eta)
        x = x + (s_next - s) * v
    return x
