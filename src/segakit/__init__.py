"""segakit: semantic control over text-to-image diffusion models, without training them."""

from __future__ import annotations

__version__ = "0.1.0"

from segakit.errors import UserError

__all__ = ["Edit", "SegaPipeline", "SegaPipelineOutput", "RecordedGuidance", "UserError", "__version__"]


def __getattr__(name: str):
    # Lazy imports keep `import segakit` (and `segakit world ...`) fast: torch and diffusers load on first use.
    if name == "Edit":
        from segakit.guidance import Edit

        return Edit
    if name in ("SegaPipeline", "SegaPipelineOutput", "RecordedGuidance"):
        from segakit import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'segakit' has no attribute {name!r}")
