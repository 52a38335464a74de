"""The tensor math of semantic guidance (SEGA; Brack et al. 2023), as small pure functions.

Notation follows the paper: ``e0`` is the unconditional noise estimate, ``ep`` the prompt's, ``ee_k``
the estimate for edit concept k.

    g       = s_g (ep - e0)                                  classifier-free guidance
    psi_k   = +-(ee_k - e0) * s_e,k                          concept direction, negated to remove
    psi_k  <- psi_k where |psi_k| >= eta_lambda(|psi_k|)     keep the tails (lambda-quantile)
    gamma   = sum_k w_k psi_k + s_m nu                       weighted sum plus momentum
    nu     <- beta_m nu + (1 - beta_m) gamma                 momentum update
    eps     = e0 + g + gamma                                 the estimate the scheduler sees

Concept refresh (segakit's addition, :class:`ConceptRefresh`): a concept's estimate is computed only every
``K`` steps; in between it is rebuilt from the concept's last direction and the current unconditional
estimate, ``ee_k ~ e0 + (ee_k - e0)|last refresh``, so the concept's row leaves the denoiser batch on those steps.
``K = 1`` is exact SEGA. The count starts again at each concept's warm-up step, where it starts acting (during
warm-up its direction only feeds the momentum): a concept is computed at its first step, at its warm-up step and
every ``K`` steps after, which ``benchmarks/refresh_schedules.py`` measured closer to exact SEGA, at lower cost,
than every ``K`` steps from step 0.

:class:`SemanticGuidance` holds the only state (the momentum ``nu``) and applies the exact rules of
diffusers' deprecated ``SemanticStableDiffusionPipeline``: quantiles per image and per latent channel;
while only some concepts are past warm-up, those are applied with weights normalised to sum 1 and
without momentum; momentum is built from step 0 and keeps being added after concepts cool down.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import torch

from segakit.core.errors import UserError, arg

QuantileOver = Literal["channel", "image"]


@dataclass(frozen=True)
class Edit:
    """One semantic guidance concept and its parameters.

    ``scale``, ``threshold`` and ``warmup`` left unset (``None``) take the model's defaults when the
    pipeline runs (:mod:`segakit.sega.defaults`: the embedded model's tuned ones, diffusers' 5 / 0.9 / 10
    for other models), exactly as ``--edit +glasses`` does on the command line. The pipeline's output
    (``out.edits``) holds the values used. The deprecated pipeline's argument names
    (``editing_prompt``, ``edit_guidance_scale``, ...) keep diffusers' defaults on every model.

    Args:
        prompt: the concept text ("glasses", "a smiling face").
        scale: edit guidance scale ``s_e``; ``None``: the model's default.
        threshold: ``lambda`` in [0, 1): only elements of ``|psi|`` at or above this quantile act;
            ``None``: the model's default.
        warmup: first denoising step (0-based) at which the concept is applied; ``None``: the model's default.
        cooldown: the concept is not applied from this step on; ``None`` means never stop.
        reverse: ``True`` steers away from the concept (remove it).
        weight: relative weight ``w_k`` among several concepts (negative weights act as 0).
    """

    prompt: str | None = None
    scale: float | None = None
    threshold: float | None = None
    warmup: int | None = None
    cooldown: int | None = None
    reverse: bool = False
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.threshold is not None and not (
            isinstance(self.threshold, (int, float)) and 0.0 <= self.threshold < 1.0
        ):
            raise UserError(f"Edit threshold {self.threshold!r} is outside [0, 1); use a quantile such as 0.9 or 0.95.")
        if self.scale is not None and not math.isfinite(self.scale):
            raise UserError(f"Edit scale {self.scale!r} is not a finite number.")
        if not math.isfinite(self.weight):
            raise UserError(f"Edit weight {self.weight!r} is not a finite number.")
        if self.warmup is not None and (int(self.warmup) != self.warmup or self.warmup < 0):
            raise UserError(f"Edit warm-up {self.warmup!r} must be a whole number of steps, 0 or more.")
        if self.cooldown is not None and (int(self.cooldown) != self.cooldown or self.cooldown < 0):
            raise UserError(f"Edit cool-down {self.cooldown!r} must be a whole number of steps, 0 or more, or None.")

    @property
    def unset(self) -> tuple[str, ...]:
        """The fields left to the model's defaults."""
        return tuple(f for f in MODEL_DEFAULT_FIELDS if getattr(self, f) is None)

    def with_defaults(self, defaults: Edit) -> Edit:
        """This edit with its unset fields taken from ``defaults``."""
        return replace(self, **{f: getattr(defaults, f) for f in self.unset}) if self.unset else self

    def alive(self, step: int) -> bool:
        """Whether the concept still acts at ``step`` (its U-Net estimate is needed)."""
        return self.cooldown is None or step < self.cooldown

    def warmed_up(self, step: int) -> bool:
        return step >= self.warmup


MODEL_DEFAULT_FIELDS = ("scale", "threshold", "warmup")
# diffusers' SemanticStableDiffusionPipeline defaults: what unset fields become where no model says otherwise
DIFFUSERS_EDIT = Edit(scale=5.0, threshold=0.9, warmup=10)


# ---------------------------------------------------------------------------------------------
# Pure functions


def quantile(x: torch.Tensor, q: float, dim: int = -1) -> torch.Tensor:
    """``torch.quantile(x, q, dim)`` with linear interpolation, for any float dtype and any size.

    The result equals torch's to the last bit: the rank is computed in float32 as torch does, the two
    order statistics are exact, and they are blended with ``torch.lerp`` in float32 (as torch does for
    the float32 inputs the reference pipeline upcasts to), then cast back to ``x.dtype``. Unlike
    ``torch.quantile`` it accepts fp16/bf16 and inputs above 2**24 elements, and it selects only the
    upper tail (``topk``) when that is the smaller side, which is the usual case for SEGA's
    lambda = 0.9-0.99.
    """
    n = x.shape[dim]
    if n == 0:
        raise UserError("Cannot take a quantile over an empty dimension.")
    rank = torch.tensor(q, dtype=torch.float32) * (n - 1)
    lo = int(rank.item())  # floor, rank >= 0
    hi = min(int(torch.ceil(rank).item()), n - 1)
    frac = rank - lo
    k = n - lo  # the lo-th smallest is the k-th largest
    if k <= n // 2:
        top = torch.topk(x, k, dim=dim, largest=True, sorted=True).values
        v_lo = top.narrow(dim, k - 1, 1)
        v_hi = top.narrow(dim, max(k - 1 - (hi - lo), 0), 1)
    else:
        ordered = torch.sort(x, dim=dim).values
        v_lo = ordered.narrow(dim, lo, 1)
        v_hi = ordered.narrow(dim, hi, 1)
    out = torch.lerp(v_lo.float(), v_hi.float(), frac.to(x.device))
    return out.squeeze(dim).to(x.dtype)


def concept_direction(ee: torch.Tensor, e0: torch.Tensor, scale: float, reverse: bool) -> torch.Tensor:
    """psi = +-(ee - e0) * s_e: the concept's guidance direction, negated to remove the concept."""
    psi = ee - e0
    if reverse:
        psi = psi * -1
    return psi * scale


def keep_tails(psi: torch.Tensor, threshold: float, over: QuantileOver = "channel") -> torch.Tensor:
    """Zero the elements of ``psi`` whose magnitude is below the ``threshold``-quantile of ``|psi|``.

    ``over="channel"`` takes one quantile per image and latent channel over height x width (the
    deprecated diffusers pipeline); ``over="image"`` one quantile per image over all channels (the
    paper's formula read literally).
    """
    mag = psi.abs()
    flat = mag.flatten(start_dim=2) if over == "channel" else mag.flatten(start_dim=1)
    eta = quantile(flat, threshold, dim=-1)
    eta = eta.reshape(eta.shape + (1,) * (psi.dim() - eta.dim()))
    return torch.where(mag >= eta, psi, torch.zeros_like(psi))


def guided_estimate(
    e0: torch.Tensor, ep: torch.Tensor, scale: float | None, *terms: torch.Tensor | None
) -> torch.Tensor:
    """eps = e0 + (s_g (ep - e0) + gamma + ...): classifier-free guidance plus the given terms (``None`` terms are
    absent). With ``scale=None`` there is no unconditional branch (``e0`` is the prompt's own estimate): eps = ep + terms."""
    guidance = scale * (ep - e0) if scale is not None else None
    for term in terms:
        if term is not None:
            guidance = term if guidance is None else guidance + term
    return ep if guidance is None else e0 + guidance


def weighted_sum(weights: torch.Tensor, psis: torch.Tensor) -> torch.Tensor:
    """sum_k w_k psi_k for ``weights`` (K,) and ``psis`` (K, B, C, H, W)."""
    return torch.einsum("k,k...->...", weights.to(psis.dtype), psis)


# ---------------------------------------------------------------------------------------------
# The one stateful piece


INACTIVE_TOLERANCE = 1e-3  # a concept whose summed guidance is below this share of the estimate's size never acted


class SemanticGuidance:
    """Combines the concepts' estimates into the guidance term gamma, step by step.

    Create one per generation. At step ``i`` ask :meth:`alive` which concepts need a U-Net estimate,
    then call the object with the unconditional estimate and those concepts' estimates; it returns the
    guidance to add to the noise estimate (or ``None`` when nothing is applied at this step) and
    updates the momentum.
    """

    def __init__(
        self,
        edits: Sequence[Edit],
        momentum_scale: float = 0.1,
        momentum_beta: float = 0.4,
        quantile_over: QuantileOver = "channel",
    ) -> None:
        if quantile_over not in ("channel", "image"):
            raise UserError(f"quantile_over {quantile_over!r} is not one of 'channel', 'image'.")
        if not 0.0 <= momentum_beta < 1.0:
            raise UserError(f"Momentum beta {momentum_beta!r} is outside [0, 1).")
        self.edits = [e.with_defaults(DIFFUSERS_EDIT) for e in edits]  # the pipeline resolves model defaults first
        self.momentum_scale = float(momentum_scale)
        self.momentum_beta = float(momentum_beta)
        self.quantile_over = quantile_over
        self.momentum: torch.Tensor | None = None
        # max(w, 0): negative weights act as 0, as in the reference.
        self._weights = [max(float(e.weight), 0.0) for e in self.edits]
        # segakit's addition, for honest results: how much each concept's guidance moved the estimate, summed over the
        # steps it acted in, beside the size of the unconditional estimate over all steps (:meth:`inactive`)
        self.effect = [0.0] * len(self.edits)
        self._reference = 0.0

    def alive(self, step: int) -> list[int]:
        """Indices of the concepts whose U-Net estimate is used at ``step``: those not cooled down, and without
        momentum (``momentum_scale`` 0) only from their warm-up on, since before it an estimate feeds nothing but
        the momentum (exact: the guidance is the same; the denoiser computes fewer rows)."""
        if self.momentum_scale == 0:
            return [k for k, e in enumerate(self.edits) if e.alive(step) and e.warmed_up(step)]
        return [k for k, e in enumerate(self.edits) if e.alive(step)]

    def __call__(self, step: int, e0: torch.Tensor, estimates: Mapping[int, torch.Tensor]) -> torch.Tensor | None:
        """Guidance to add at ``step``. ``estimates`` maps each alive concept index to its estimate."""
        if not self.edits:
            return None
        if self.momentum is None:
            self.momentum = torch.zeros_like(e0)
        alive = self.alive(step)
        if alive:
            psis = torch.stack(
                [
                    keep_tails(
                        concept_direction(estimates[k], e0, self.edits[k].scale, self.edits[k].reverse),
                        self.edits[k].threshold,
                        self.quantile_over,
                    )
                    for k in alive
                ]
            )
            weights = torch.tensor([self._weights[k] for k in alive], device=e0.device)
        else:
            psis = e0.new_zeros((0, *e0.shape))
            weights = torch.zeros(0, device=e0.device)

        warm = [j for j, k in enumerate(alive) if self.edits[k].warmed_up(step)]
        n_warm = sum(e.warmed_up(step) for e in self.edits)  # cooled-down concepts count, weight 0
        applied: torch.Tensor | None = None
        if 0 < n_warm < len(self.edits):
            # Only some concepts are past warm-up: normalised weights, no momentum.
            w = weights[warm]
            total = w.sum()
            if warm and total > 0:
                applied = weighted_sum(w / total, psis[warm])
            else:  # the reference divides 0 by 0 here (NaN); we apply nothing
                applied = torch.zeros_like(e0)

        self._record(alive, warm, psis, weights, e0)
        gamma = weighted_sum(weights, psis) if alive else torch.zeros_like(e0)
        gamma = gamma + self.momentum_scale * self.momentum
        self.momentum = self.momentum_beta * self.momentum + (1 - self.momentum_beta) * gamma
        if n_warm == len(self.edits):
            applied = gamma
        return applied

    def _record(
        self, alive: list[int], warm: list[int], psis: torch.Tensor, weights: torch.Tensor, e0: torch.Tensor
    ) -> None:
        """Add this step's share of each warmed-up concept's guidance to :attr:`effect` (mean absolute value)."""
        self._reference += float(e0.detach().abs().mean())
        for j in warm:
            self.effect[alive[j]] += float(weights[j]) * float(psis[j].detach().abs().mean())

    def inactive(self, tolerance: float = INACTIVE_TOLERANCE) -> list[int]:
        """Indices of the concepts that never acted: their guidance over the run is below ``tolerance`` of the
        unconditional estimate's size (a zero scale or weight, a schedule that never warms up, a concept whose
        estimate equals the unconditional one); segakit's addition, so a generation can say so."""
        if self._reference <= 0:
            return list(range(len(self.edits)))
        return [k for k, effect in enumerate(self.effect) if effect / self._reference < tolerance]


AUTO_REFRESH = "auto"


def refresh_interval(edit_refresh: int | str, steps: int) -> int:
    """The K of ``edit_refresh``: the number itself, or for ``"auto"`` ``round(4 * sqrt(steps / 25))`` (at least 1):
    4 at 25 steps and 6 at 50, the intervals at which ``benchmarks/refresh_schedules.py`` measured about the same
    distance from exact SEGA (K = 4 at 25 steps is the setting of the SEGA study in docs/results/sega-fast); other
    step counts follow the same curve."""
    value = edit_refresh
    if isinstance(value, str):
        if value.strip() == AUTO_REFRESH:
            return max(1, round(4 * math.sqrt(max(steps, 1) / 25)))
        value = int(value) if value.strip().isdigit() else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1 or int(value) != value:
        raise UserError(
            f"{arg('edit_refresh')} {edit_refresh!r} is neither a whole number of 1 or more (1 is exact SEGA) nor 'auto'."
        )
    return int(value)


class ConceptRefresh:
    """Reuse each concept's direction ``ee_k - e0`` between refreshes every ``every`` steps (see the module).

    A concept is refreshed the first step it is alive, at its warm-up step (``starts[k]``, where it starts acting)
    and then every ``every`` steps; :meth:`due` says which alive concepts need a denoiser estimate at a step,
    :meth:`estimates` completes the rest.
    """

    def __init__(
        self, every: int, name: str = "edit_refresh", exact: str = "exact SEGA", starts: Sequence[int] = ()
    ) -> None:
        if isinstance(every, bool) or not isinstance(every, (int, float)) or int(every) != every or every < 1:
            raise UserError(f"{name} {every!r} must be a whole number of 1 or more (1 is {exact}).")
        self.every = int(every)
        self.starts = list(starts)
        self._direction: dict[int, torch.Tensor] = {}
        self._last: dict[int, int] = {}

    def due(self, step: int, alive: Sequence[int]) -> list[int]:
        """The alive concepts whose estimate is computed at ``step``."""
        return [
            k
            for k in alive
            if k not in self._last
            or step - self._last[k] >= self.every
            or (k < len(self.starts) and step == self.starts[k])
        ]

    def estimates(
        self, step: int, e0: torch.Tensor, computed: Mapping[int, torch.Tensor], alive: Sequence[int]
    ) -> dict[int, torch.Tensor]:
        """Every alive concept's estimate: the computed ones (their direction stored), the others rebuilt."""
        for k, ee in computed.items():
            self._direction[k] = ee - e0
            self._last[k] = step
        return {k: computed[k] if k in computed else e0 + self._direction[k] for k in alive}
