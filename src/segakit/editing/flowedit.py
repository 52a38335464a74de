"""FlowEdit (Kulikov et al., "FlowEdit: Inversion-Free Text-Based Editing Using Pre-Trained Flow Models", ICCV
2025): edit an image with a rectified-flow model without inverting it.

The edit is an ODE of its own, started at the source latents ``x_src`` and integrated over the noise levels
``sigma`` from ``sigmas[skip]`` down to 0. At each level, a fresh noise ``n`` puts the source at that level,
``z_src = (1 - sigma) x_src + sigma n``, and the edited image is moved the same way, ``z_tar = z + z_src - x_src``;
the edit follows the difference of the two prompts' velocities there, averaged over ``n_avg`` noises::

    z <- z + (sigma_next - sigma) mean_n[ v(z_tar, sigma | target) - v(z_src, sigma | source) ]

No noise map is stored and nothing is inverted, so what the prompts share cancels in the difference: the image
keeps its composition where the prompts agree. ``skip`` (the paper's ``n_max``, counted from the start of the
schedule) sets how much of the schedule the edit uses: more skipped steps, smaller edits. ``strength`` =
1 - skip / steps, as img2img's; at strength 0 (or with the same prompt and guidance on both sides) the output is
the source latents exactly.

Cost: 2 x ``n_avg`` guided denoiser evaluations per edited step (source and target; both sides batched in one
call where the caller's velocity allows). Measured on the embedded flow model in docs/results/flow (issue 33).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from segakit.editing.ledits import noise_mask

# velocity(z_src, z_tar, sigma) -> (v_src, v_tar): both sides at one noise level, in one call if the caller can
PairVelocity = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def skipped_steps(steps: int, strength: float) -> int:
    """The number of leading (noisiest) steps FlowEdit leaves out for an edit ``strength`` in [0, 1]."""
    return steps - int(round(strength * steps))


def flowedit(velocity: PairVelocity, x_src: torch.Tensor, sigmas: torch.Tensor, skip: int = 0, n_avg: int = 1,
             generator: torch.Generator | None = None, mask: float = 0.0) -> torch.Tensor:  # fmt: skip
    """The edited latents: FlowEdit over ``sigmas`` (decreasing to 0) from step ``skip`` on (see the module).
    ``mask`` in (0, 1): each step moves the latents only where the velocity difference (its absolute value summed
    over channels) reaches its ``mask`` quantile over the image, LEDITS++'s noise mask applied to FlowEdit's step;
    0 (the paper): everywhere."""
    z = x_src
    for i in range(skip, len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        delta = torch.zeros_like(x_src)
        for _ in range(n_avg):
            n = torch.randn(x_src.shape, generator=generator, dtype=torch.float32).to(x_src)
            z_src = (1 - s) * x_src + s * n
            z_tar = z + z_src - x_src
            v_src, v_tar = velocity(z_src, z_tar, s)
            delta = delta + (v_tar - v_src)
        delta = delta / n_avg
        if mask > 0:
            delta = delta * noise_mask(delta, mask)
        z = z + (s_next - s) * delta
    return z
