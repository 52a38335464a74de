"""segakit: semantic control over text-to-image diffusion models, without training them.

Packages, lowest layer first (a layer imports only the ones below it; ``lint-imports`` checks this):
``core`` (loading, conditioning, images, atomic files, errors) <- ``world`` (the faces world and its oracle)
<- ``sega`` | ``directions`` | ``editing`` <- ``jobs`` <- ``eval`` <- ``serve`` | ``train`` <- ``cli``.
"""

from __future__ import annotations

__version__ = "0.3.0"

from segakit.core import quiet as _quiet
from segakit.core.errors import UserError

_quiet.install()  # no notices about torchvision or dtype casting from our own loading (segakit.core.quiet)

__all__ = [
    "Edit",
    "SegaPipeline",
    "SegaPipelineOutput",
    "SegaSD3Pipeline",
    "SegaFluxPipeline",
    "RecordedGuidance",
    "UserError",
    "__version__",
]


def __getattr__(name: str):
    # Lazy imports keep `import segakit` (and `segakit world ...`) fast: torch and diffusers load on first use.
    if name == "Edit":
        from segakit.sega.guidance import Edit

        return Edit
    if name == "RecordedGuidance":
        from segakit.sega.recorded import RecordedGuidance

        return RecordedGuidance
    if name in ("SegaPipeline", "SegaPipelineOutput"):
        from segakit.sega import pipeline

        return getattr(pipeline, name)
    if name in ("SegaSD3Pipeline", "SegaFluxPipeline"):
        from segakit.sega import flow_pipelines

        return getattr(flow_pipelines, name)
    raise AttributeError(f"module 'segakit' has no attribute {name!r}")
