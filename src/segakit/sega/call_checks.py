"""What a SegaPipeline call checks before it samples, where the answer depends on the model family: the h-space
site its directions share, and the guidance settings FLUX would silently ignore."""

from __future__ import annotations

from segakit.core.errors import UserError, arg
from segakit.core.families import Family


def directions_site(directions) -> str | None:
    """The one h-space site that the directions were learned at (None: the family's default)."""
    sites = {s for s in (getattr(d, "site", None) for d in directions) if s is not None}
    if len(sites) > 1:
        raise UserError(
            f"The directions were learned at different sites ({', '.join(sorted(sites))}); apply them in separate calls."
        )
    return sites.pop() if sites else None


def check_true_cfg(fam: Family, negative_prompt, true_cfg_scale: float) -> None:
    """Refuse the settings that would silently do nothing: FLUX's negative prompt acts only under true CFG."""
    if not fam.guidance_embedded:
        if true_cfg_scale != 1.0:
            raise UserError(
                f"{arg('true_cfg_scale')} {true_cfg_scale!r} is for FLUX models; on {fam.name.upper()} models use {arg('guidance_scale')}."
            )
        return
    if negative_prompt is not None and true_cfg_scale <= 1.0:
        raise UserError(
            f"{arg('negative_prompt')} acts on FLUX only under true CFG; pass {arg('true_cfg_scale')} above 1 (e.g. 4) with it, or leave it out."
        )
    if true_cfg_scale > 1.0 and negative_prompt is None:
        raise UserError(
            f"{arg('true_cfg_scale')} {true_cfg_scale!r} needs a {arg('negative_prompt')} on FLUX (an empty string is allowed)."
        )


def refresh_guidance(guidance_refresh: int, do_cfg: bool):
    """The unconditional estimate's refresh for ``guidance_refresh`` K (None at 1: computed every step); refused
    in one sentence where the call has no classifier-free guidance to refresh."""
    from segakit.sega.guidance import ConceptRefresh

    if guidance_refresh == 1:
        return None
    refresh = ConceptRefresh(guidance_refresh, arg("guidance_refresh"), "classifier-free guidance at every step")
    if not do_cfg:
        raise UserError(
            f"{arg('guidance_refresh')} {guidance_refresh!r} refreshes classifier-free guidance, which this call "
            f"does not use ({arg('guidance_scale')} <= 1, or a distilled model without true CFG); leave it at 1."
        )
    return refresh
