"""One adapter per model family (see :mod:`segakit.core.families.base` for the interface and how to add one)."""

from __future__ import annotations

from segakit.core.families.base import Family
from segakit.core.families.flux import FluxFamily
from segakit.core.families.sd import SDFamily, SDXLFamily
from segakit.core.families.sd3 import SD3Family

FAMILIES: dict[str, type[Family]] = {"sd": SDFamily, "sdxl": SDXLFamily, "sd3": SD3Family, "flux": FluxFamily}


def family_name(components: dict) -> str:
    """Which family a set of diffusers components is: "sd", "sdxl", "sd3" or "flux"."""
    transformer = components.get("transformer")
    if transformer is not None:
        kind = type(transformer).__name__
        if kind.startswith("Flux"):
            return "flux"
        if kind.startswith("SD3"):
            return "sd3"
        from segakit.core.errors import UserError

        raise UserError(
            f"segakit has no adapter for the {kind} transformer yet; it runs SD 1.x/2.x, SDXL, SD3 and FLUX.1."
        )
    unet = components.get("unet")
    return "sdxl" if unet is not None and getattr(unet.config, "addition_embed_type", None) == "text_time" else "sd"


def family_for(pipe) -> Family:
    """The adapter bound to ``pipe``."""
    return FAMILIES[family_name(pipe.components)](pipe)


__all__ = ["FAMILIES", "Family", "FluxFamily", "SD3Family", "SDFamily", "SDXLFamily", "family_for", "family_name"]
