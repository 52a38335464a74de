"""The API's bodies: field names are the PNG parameters and the CLI options; values are checked with the CLI's sentences.

A request becomes a :class:`GenerationParams` in :func:`to_params`, which adds the server's caps (steps, images,
size, concepts) to what ``GenerationParams.validate`` checks. Fields that name files on the server (LoRAs,
embeddings, a direction library, recorded guidance) are not taken over HTTP; directions are named from the
model's direction library (``"presentation=woman:0.5"``).
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from segakit.core.errors import UserError, arg, closest
from segakit.jobs.generate import GenerationParams
from segakit.sega.editspec import parse_edit
from segakit.sega.guidance import Edit
from segakit.serve.config import Limits

_STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


def _whole(value: Any) -> Any:
    """A JSON number with no fractional part (``5.0``) is the whole number JSON Schema says it is; strings stay refused."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Int = Annotated[int, BeforeValidator(_whole)]
MAX_SEED = 2**63 - 1
# Keys a PNG carries that describe the image rather than ask for one: accepted and ignored, so that the
# ``parameters`` of a returned image can be posted back as they are.


class EditObject(BaseModel):
    """One concept, as ``Edit`` and the PNG store it; unset scale / threshold / warm-up take the model's defaults."""

    model_config = _STRICT
    prompt: str
    scale: float | None = None
    threshold: float | None = None
    warmup: Int | None = None
    cooldown: Int | None = None
    reverse: bool = False
    weight: float = 1.0


class GenerateRequest(BaseModel):
    """``POST /api/generate``: the fields of ``segakit generate`` (and of the PNG it writes)."""

    model_config = _STRICT
    prompt: str = Field(description="The text prompt.", examples=["a face of a person"])
    edits: list[str | EditObject] = Field(default_factory=list, description="Concepts: the CLI's edit strings such as '+glasses:s=6' or objects.")  # fmt: skip
    negative_prompt: str | None = None
    seed: Int = Field(0, description="Seed of the first image; image i uses seed + i.")
    num_images: Int = 1
    steps: Int | None = Field(
        None,
        description="Denoising steps (default: 25 on the embedded model, 50 otherwise; at most the server's limit when left out).",
    )
    guidance: float | None = Field(None, description="Classifier-free guidance scale (default 7.5).")
    height: Int | None = None
    width: Int | None = None
    eta: float = 0.0
    momentum_scale: float = 0.1
    momentum_beta: float = 0.4
    quantile_over: Literal["channel", "image"] = "channel"
    edit_refresh: Int | Literal["auto"] = Field(
        1,
        description="Concept refresh: each concept's estimate is computed every K steps and its direction reused in "
        "between (1: exact SEGA; 2-4 cost less; 'auto': K from the steps, 4 at 25; docs/guide.md).",
    )
    guidance_refresh: Int = Field(
        1,
        description="Guidance refresh: the unconditional estimate is computed every K steps and the guidance offset "
        "reused in between (1: exact classifier-free guidance; 2 costs less; needs guidance above 1; docs/guide.md).",
    )
    true_cfg: float = Field(
        1.0,
        description="FLUX servers: classifier-free guidance against negative_prompt (diffusers' true_cfg_scale; 1: off; "
        "e.g. 4 with a negative prompt).",
    )
    sweep: list[float] | None = Field(
        None, description="Scales for the single edit, rendered side by side (a strength strip)."
    )
    directions: list[str] = Field(default_factory=list, description="Directions of the model's library, NAME[:STRENGTH], e.g. 'presentation=woman:0.5'.")  # fmt: skip
    fair: str | None = Field(None, description="Fair generation over an attribute's values, e.g. 'presentation'.")
    fair_method: Literal["directions", "sega"] = Field(
        "directions", description="How fair balances: the library's directions, or Fair Diffusion's SEGA edits."
    )
    fair_draw: Literal["spread", "random"] = Field(
        "spread",
        description="How each image's value is drawn from its seed: spread (the shares come out as asked over consecutive seeds) or random (each seed on its own, as segakit drew before).",
    )
    safe: bool = False
    enhance: bool = False
    library_strength: float | None = None
    model: str | None = Field(None, description="Must be the server's model when given (a PNG's parameters name it).")
    # Files on the server are not taken over HTTP; the keys exist so that a PNG's parameters post back unchanged.
    loras: list[Any] = Field(default_factory=list, description="Must be empty over HTTP.")
    embeddings: list[Any] = Field(default_factory=list, description="Must be empty over HTTP.")
    library: str | None = Field(None, description="Must be unset over HTTP.")
    apply_guidance: str | None = Field(None, description="Must be unset over HTTP.")
    segakit_version: str | None = None
    edit_defaults: dict[str, Any] | None = None
    fair_choice: str | None = None
    warnings: list[str] | None = Field(
        None, description="What a returned image's parameters say went wrong (a concept that never acted); ignored."
    )


class EditRequest(BaseModel):
    """``POST /api/edit``: an image (base64 PNG or JPEG) and an instruction, as ``segakit edit`` takes them. On an
    SD3 or FLUX server the methods are flowedit, invert and sega, and a U-Net-only field is refused (docs/flow.md)."""

    model_config = _STRICT
    image: str = Field(description="The image to edit, base64-encoded PNG or JPEG.")
    instruction: str = Field(description="What to change, e.g. 'give her glasses'.")
    method: Literal["onthefly", "sega", "flowedit", "invert"] | None = Field(
        None,
        description="U-Net models: onthefly (default) or sega. SD3 and FLUX models: flowedit (default; FlowEdit, no inversion), invert (the captions' edit on a rectified-flow inversion) or sega (SEGA concepts on that inversion).",
    )
    inversion: Literal["ddim", "ddpm"] | None = Field(
        None,
        description="U-Net models, method 'onthefly': ddim (the paper's; default) or ddpm (segakit's faster variant, keeps more of the image).",
    )
    source_caption: str | None = Field(
        None,
        description="What the image shows (skips the captioner; needed on models without one; the embedded model has its own).",
    )
    captions_before: list[str] = Field(
        default_factory=list, description="Captions of the image before the edit (default: the source caption)."
    )
    captions_after: list[str] = Field(
        default_factory=list,
        description="Captions after the edit (skip the caption writer; needed on models without one; the embedded model has its own).",
    )
    concepts: list[str] = Field(
        default_factory=list, description="method 'sega': the concepts to add or remove, e.g. '+glasses', '-beard'."
    )
    captions: Int = Field(3, description="Captions the caption writer writes per side.")
    seed: Int = 0
    steps: Int | None = Field(
        None,
        description="Inversion steps = edit steps (default 25 on U-Nets; SD3 and FLUX: flowedit the paper's 50 / 28, invert and sega 28; or the server's limit when lower).",
    )
    guidance: float | None = Field(
        None,
        description="Classifier-free guidance of the edit pass (default 5; 3.5 for onthefly on a DDPM inversion); sega: each concept's scale (5); flowedit: the target side's guidance (the paper's: 13.5 SD3, 5.5 FLUX); invert: inversion and sampling (1).",
    )
    source_guidance: float | None = Field(
        None,
        description="sega: guidance towards the source caption while inverting and sampling (default 1: none); flowedit: the source side's guidance (the paper's: 3.5 SD3, 1.5 FLUX).",
    )
    skip: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="Share of the noisiest steps left out: U-Net sega and onthefly on a DDPM inversion (default 0.15); flowedit, 1 - its strength (the paper's: 0.34 SD3, 4/28 FLUX).",
    )
    eta: float = Field(
        0.0, ge=0, le=1, description="method 'invert' (SD3, FLUX): RF-Inversion's pull back towards the image (0: off)."
    )
    eta_stop: Int | None = Field(None, ge=0, description="method 'invert': eta acts on the steps before this one.")
    gamma: float = Field(
        0.0,
        ge=0,
        le=1,
        description="methods 'invert' and 'sega' on SD3 and FLUX: RF-Inversion's pull towards a Gaussian while inverting (0: off).",
    )
    size: Int | None = Field(
        None, ge=1, description="SD3 and FLUX: the side in pixels the image is edited at (default: the model's)."
    )
    mask: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="onthefly on a DDPM inversion: edit only where the direction moves the noise prediction most, this quantile of the latent (default 0: everywhere; 0.98 with guidance 5 keeps more of the image); on SD3 and FLUX, flowedit: each step moves the image only where the two prompts' velocities differ most (default: the model's, 0.8 on the embedded flow model, where it keeps more of the image at about the same success, none elsewhere).",
    )
    blend_dilate: Int = Field(
        0,
        ge=0,
        le=8,
        description="with blend: grow each step's mask by this many latent pixels before it joins the region the edit may change (keeps a noise-masked edit in one piece).",
    )
    threshold: float = Field(
        0.9,
        ge=0,
        lt=1,
        description="method 'sega': the masks' quantile (LEDITS++: 0.9; with sega_mask 'noise' and blend, 0.99 edits more and keeps more of the image than LEDITS++'s defaults on the embedded model).",
    )
    sega_mask: Literal["intersect", "attention", "noise"] = Field(
        "intersect",
        description="method 'sega': the masks each concept's guidance goes through: intersect (LEDITS++'s: attention and noise mask), attention or noise alone (SEGA's own quantile mask).",
    )
    blend: bool = Field(
        False,
        description="method 'sega', or onthefly on a DDPM inversion with a mask: outside the masks of the steps so far, hold the inversion's own latents (keeps more of the image, edits less often).",
    )


class ImageOut(BaseModel):
    png: str = Field(description="The image as a base64 PNG that carries its parameters in a 'segakit' text chunk.")
    seed: int
    parameters: dict[str, Any]


class GenerateResponse(BaseModel):
    images: list[ImageOut]
    seconds: float = Field(description="Time spent rendering.")
    queue_seconds: float = Field(description="Time spent waiting in the queue.")


class ErrorResponse(BaseModel):
    error: str = Field(description="One sentence: the value, and what is allowed.")


def parse_edits(items: list[str | EditObject]) -> list[Edit]:
    return [parse_edit(e) if isinstance(e, str) else Edit(**e.model_dump()) for e in items]


def library_directions(specs: list[str], library) -> list[str]:
    """``NAME[:STRENGTH]`` names of the library (or the file paths a PNG recorded) to the CLI's FILE:STRENGTH specs."""
    by_path = {str((library.folder / f).resolve()): n for n, f in library.files.items()}
    out = []
    for spec in specs:
        name, sep, tail = spec.strip().rpartition(":")
        if not sep or not _is_number(tail):
            name, tail = spec.strip(), ""
        if name not in library.files:
            name = by_path.get(str(Path(name).resolve()), name) if name.endswith(".safetensors") else name
        if name not in library.files:
            raise UserError(f"Direction {spec!r} is not in the model's direction library; use NAME[:STRENGTH] with NAME one of "
                            f"{', '.join(library.names())}{closest(name, library.names())}.")  # fmt: skip
        out.append(f"{(library.folder / library.files[name]).resolve()}:{tail or library.strength_of(name)}")
    return out


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def to_params(req: GenerateRequest, model: str, limits: Limits, library=None) -> GenerationParams:
    """The job a request asks for, with the server's caps; bad values raise :class:`UserError`."""
    from segakit.sega.defaults import default_steps

    if req.model is not None and req.model != model:
        raise UserError(
            f"model {req.model!r} is not this server's model; it serves {model!r} (leave model out or name it)."
        )
    for name in ("loras", "embeddings", "library", "apply_guidance"):
        if getattr(req, name):
            raise UserError(f"{name} names files on the server, which the HTTP API does not take; use segakit generate for it.")  # fmt: skip
    steps = (
        min(default_steps(model), limits.max_steps) if req.steps is None else req.steps
    )  # left out: what the server allows
    if steps > limits.max_steps:
        raise UserError(
            f"{arg('steps')} {steps} is above this server's limit of {limits.max_steps}; ask for {limits.max_steps} or fewer."
        )
    if req.num_images > limits.max_images:
        raise UserError(
            f"{arg('num_images')} {req.num_images} is above this server's limit of {limits.max_images} images per request."
        )
    if len(req.edits) > limits.max_concepts:
        raise UserError(
            f"{len(req.edits)} {arg('edits')} were given; this server takes at most {limits.max_concepts} concepts per request."
        )
    if req.sweep is not None and len(req.sweep) > limits.max_sweep:
        raise UserError(
            f"{arg('sweep')} has {len(req.sweep)} scales; this server renders at most {limits.max_sweep} per strip."
        )
    for name in ("height", "width"):
        value = getattr(req, name)
        if value is not None and not (8 <= value <= limits.max_side and value % 8 == 0):
            raise UserError(
                f"{arg(name)} {value} is not a multiple of 8 between 8 and this server's limit of {limits.max_side} pixels."
            )
    if req.seed > MAX_SEED - limits.max_images:
        raise UserError(
            f"{arg('seed')} {req.seed} is too large; use a whole number from 0 to {MAX_SEED - limits.max_images}."
        )
    if not 0 <= req.eta <= 1:
        raise UserError(f"{arg('eta')} {req.eta} is outside [0, 1]; 0 is DDIM, 1 is DDPM-like sampling.")
    if req.directions and library is None:
        raise UserError(f"directions need a direction library, and model {model!r} has none on this server.")
    params = GenerationParams(
        prompt=req.prompt, model=model, edits=parse_edits(req.edits), negative_prompt=req.negative_prompt,
        seed=req.seed, num_images=req.num_images, steps=steps, guidance=req.guidance, height=req.height,
        width=req.width, eta=req.eta, momentum_scale=req.momentum_scale, momentum_beta=req.momentum_beta,
        quantile_over=req.quantile_over, edit_refresh=req.edit_refresh, guidance_refresh=req.guidance_refresh,
        true_cfg=req.true_cfg, sweep=req.sweep, directions=library_directions(req.directions, library) if req.directions else [],
        fair=req.fair, fair_method=req.fair_method, fair_draw=req.fair_draw, safe=req.safe, enhance=req.enhance, library_strength=req.library_strength,
    )  # fmt: skip
    params.validate()
    if ((params.fair and params.fair_method == "directions") or params.safe or params.enhance) and library is None:
        raise UserError(
            f"fair, safe and enhance need a direction library, and model {model!r} has none on this server."
        )
    return params


def decode_image(data: str, field: str = "image"):
    """A base64 PNG or JPEG to a PIL image; anything else is a :class:`UserError`."""
    from PIL import Image, UnidentifiedImageError

    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise UserError(f"{field} is not base64 text; send the image file's bytes base64-encoded.") from None
    try:
        with Image.open(io.BytesIO(raw)) as im:
            if im.format not in ("PNG", "JPEG"):
                raise UserError(f"{field} is a {im.format} image; send a PNG or JPEG.")
            im.load()
            return im.copy()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        raise UserError(f"{field} is not a PNG or JPEG image (its {len(raw)} bytes do not decode as one).") from None
