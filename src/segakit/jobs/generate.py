"""A generation job: every parameter in one dataclass, stored in each PNG it writes.

Image ``i`` of a job uses seed ``seed + i`` (one generator per image), so any single PNG can be
regenerated on its own from the parameters it carries (``segakit generate --from-png``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

from segakit.core.atomic import ensure_writable_dir
from segakit.core.draws import DRAWS
from segakit.core.errors import UserError, arg
from segakit.core.loading import model_key, weights_file
from segakit.core.memory import MAX_CHUNK
from segakit.directions.library import SAFE
from segakit.sega.guidance import Edit, refresh_interval
from segakit.sega.honest import idle_concepts, idle_warning

FAIR_METHODS = ("directions", "sega")  # --fair by the library's directions, or by Fair Diffusion's SEGA edits
ProgressFn = Callable[[int], None]  # called with the number of steps just finished
# keys a PNG stores beside the generation parameters (what was used or drawn, not what was asked)
INFORMATIONAL = ("segakit_version", "edit_defaults", "fair_choice", "image_seed", "scale", "warnings")


@dataclass
class LoraWeights:
    """A LoRA file (.safetensors) and the scale it is applied with (diffusers' ``set_adapters`` weight)."""

    path: str
    scale: float = 1.0


@dataclass
class GenerationParams:
    prompt: str
    model: str = "embedded"
    edits: list[Edit] = field(default_factory=list)
    negative_prompt: str | None = None
    seed: int = 0
    num_images: int = 1
    steps: int = 50
    guidance: float | None = None
    height: int | None = None
    width: int | None = None
    eta: float = 0.0
    momentum_scale: float = 0.1
    momentum_beta: float = 0.4
    quantile_over: str = "channel"
    edit_refresh: int | str = (
        1  # "auto" or each concept computed every K steps, its direction reused in between (1: exact SEGA)
    )
    guidance_refresh: int = 1  # the unconditional estimate every K steps, its offset reused in between (1: exact CFG)
    true_cfg: float = 1.0  # FLUX: classifier-free guidance against negative_prompt (diffusers' true_cfg_scale; 1: off)
    sweep: list[float] | None = None  # scales for the single edit, rendered side by side
    apply_guidance: str | None = None  # a recorded guidance file (safetensors) added at every step
    directions: list[str] = field(default_factory=list)  # h-space direction files, "FILE[:STRENGTH]"
    fair: str | None = None  # fair generation over an attribute's values: "presentation" or "skin=light:0.5,dark:0.5"
    fair_method: str = (
        "directions"  # "directions" (the library's h-space directions) or "sega" (Fair Diffusion's edits)
    )
    fair_draw: str = "spread"  # how each image's value is drawn from its seed (segakit.core.draws.DRAWS)
    safe: bool = False  # the library's anti-horror direction, always on
    enhance: bool = False  # the library's directions for the attribute values the prompt names
    library: str | None = None  # the direction library folder (default: the embedded model's)
    library_strength: float | None = None  # the strength of the library's directions (default: the library's own)
    loras: list[LoraWeights] = field(default_factory=list)  # loaded in order, each at its scale
    embeddings: list[str] = field(default_factory=list)  # textual-inversion files (.safetensors)

    def validate(self) -> None:
        if not self.prompt.strip() and not self.edits:
            raise UserError(f"The prompt is empty and no {arg('edits')} is given; write a prompt or at least one edit.")
        if self.steps < 1:
            raise UserError(f"{arg('steps')} {self.steps} is below 1; use 1 or more denoising steps (25-50 is usual).")
        if self.num_images < 1:
            raise UserError(f"{arg('num_images')} {self.num_images} is below 1; ask for at least one image.")
        if self.seed < 0:
            raise UserError(f"{arg('seed')} {self.seed} is negative; use a whole number of 0 or more.")
        if self.guidance is not None and self.guidance < 0:
            raise UserError(f"{arg('guidance')} {self.guidance} is negative; use 0 or more (7.5 is usual).")
        if self.quantile_over not in ("channel", "image"):
            raise UserError(f"{arg('quantile_over')} {self.quantile_over!r} is not one of 'channel', 'image'.")
        if not 0 <= self.momentum_beta < 1:
            raise UserError(f"{arg('momentum_beta')} {self.momentum_beta} is outside [0, 1).")
        refresh_interval(self.edit_refresh, self.steps)  # a whole number of 1 or more, or "auto"
        if int(self.guidance_refresh) != self.guidance_refresh or self.guidance_refresh < 1:
            raise UserError(
                f"{arg('guidance_refresh')} {self.guidance_refresh!r} is not a whole number of 1 or more "
                "(1 is classifier-free guidance at every step)."
            )
        if not math.isfinite(self.true_cfg) or self.true_cfg < 1:
            raise UserError(
                f"{arg('true_cfg')} {self.true_cfg!r} is below 1 or not a number; use 1 (off) or more (e.g. 4, with a negative prompt)."
            )
        if self.library_strength is not None and not math.isfinite(self.library_strength):
            raise UserError(f"{arg('library_strength')} {self.library_strength!r} is not a finite number.")
        if self.fair is not None and not self.fair.partition("=")[0].strip():
            raise UserError(
                f"{arg('fair')} {self.fair!r} names no attribute; write an attribute such as presentation, or shares such as skin=light:0.5,dark:0.5."
            )
        if self.fair_method not in FAIR_METHODS:
            raise UserError(f"{arg('fair_method')} {self.fair_method!r} is not one of {', '.join(FAIR_METHODS)}.")
        if self.fair_draw not in DRAWS:
            raise UserError(f"{arg('fair_draw')} {self.fair_draw!r} is not one of {', '.join(DRAWS)}.")
        if self.fair_method != "directions" and not self.fair:
            raise UserError(
                f"{arg('fair_method')} {self.fair_method} chooses how {arg('fair')} balances an attribute; give {arg('fair')} ATTRIBUTE too."
            )
        for lora in self.loras:
            weights_file(lora.path, arg("loras"))
            if not math.isfinite(lora.scale):
                raise UserError(
                    f"{arg('loras')} {lora.path!r} has scale {lora.scale}; use a finite number such as 0.8."
                )
        for path in self.embeddings:
            weights_file(path, arg("embeddings"))
        if self.sweep is not None:
            if len(self.edits) != 1:
                raise UserError(
                    f"{arg('sweep')} varies the strength of exactly one edit; {len(self.edits)} edits were given."
                )
            if len(self.sweep) < 2:
                raise UserError(f"{arg('sweep')} needs at least two scales, for example 0,2,4,6.")

    def to_json(self) -> dict:
        data = asdict(self)
        data["edits"] = [asdict(e) for e in self.edits]
        if (
            self.edit_refresh == 1
        ):  # exact SEGA: absent, so files and job keys from before concept refresh stay the same
            del data["edit_refresh"]
        if self.guidance_refresh == 1:  # exact CFG: absent, as edit_refresh
            del data["guidance_refresh"]
        if self.true_cfg == 1.0:  # off: absent, as edit_refresh, so files and job keys from before it stay the same
            del data["true_cfg"]
        return data

    @classmethod
    def from_json(cls, data: dict) -> GenerationParams:
        data = dict(data)
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known - set(INFORMATIONAL)
        if unknown:
            raise UserError(f"Unknown generation parameters {sorted(unknown)} in the PNG; is it from a newer segakit?")
        if data.get("fair") and "fair_draw" not in data:  # written before the spread draw: each seed drew at random
            data["fair_draw"] = "random"
        data["edits"] = [Edit(**e) for e in data.get("edits", [])]
        data["loras"] = [LoraWeights(**x) for x in data.get("loras", [])]
        return cls(**{k: v for k, v in data.items() if k in known})


def output_paths(out: Path, count: int, stem: str = "image") -> list[Path]:
    """``out`` ending in .png is a file (numbered when count > 1); otherwise a folder."""
    if out.suffix.lower() == ".png":
        ensure_writable_dir(out.parent if str(out.parent) else Path("."))
        if count == 1:
            return [out]
        return [out.with_name(f"{out.stem}-{i:03d}.png") for i in range(count)]
    ensure_writable_dir(out)
    return [out / f"{stem}-{i:03d}.png" for i in range(count)]


def load_directions(specs: list[str]) -> list:
    """``FILE[:STRENGTH]`` specs to (Direction, strength) pairs; a bad spec or file is a UserError."""
    from segakit.directions import Direction, parse_direction_spec

    loaded = []
    for spec in specs:
        path, strength = parse_direction_spec(spec)
        loaded.append((Direction.load(path), strength))
    return loaded


def _library(params: GenerationParams):
    """The direction library a job's --fair / --safe / --enhance use (None when it uses none)."""
    if not ((params.fair and params.fair_method == "directions") or params.safe or params.enhance):
        return None
    from segakit.directions.library import Library, library_folder

    return Library.load(library_folder(params.library, params.model, "--fair, --safe and --enhance need"))


def _strength(library, params: GenerationParams, name: str | None = None) -> float | None:
    """--library-strength, else the library's strength for direction ``name`` (None for fairness: per value)."""
    if params.library_strength is not None:
        return params.library_strength
    return library.strength_of(name) if name is not None else None


def _fair(library, params: GenerationParams, seeds: list[int], unet):
    """The per-image draws of fair generation for images with ``seeds`` (image i from seed i), or None."""
    if not params.fair:
        return None
    attribute, _, shares = params.fair.partition("=")
    if params.fair_method == "sega":  # Fair Diffusion: the same draw, SEGA edits instead of directions
        from segakit.sega.fair import FairDiffusion

        return FairDiffusion.draw(attribute.strip(), len(seeds), seeds[0], shares or None, draw=params.fair_draw)
    fair = library.fair(
        attribute.strip(), len(seeds), seeds[0], shares or None, _strength(library, params), params.fair_draw
    )
    for recipe in fair.recipes.values():
        for d, _ in recipe:
            d.check_model(unet)
    return fair


def load_adapters(pipe, params: GenerationParams) -> None:
    """The job's LoRAs (adapters ``lora0``, ``lora1``, ... at their scales) and embeddings, into ``pipe``."""
    names = []
    for i, lora in enumerate(params.loras):
        names.append(f"lora{i}")
        pipe.load_lora_weights(lora.path, adapter_name=names[-1])
    if names:
        pipe.set_adapters(names, [lora.scale for lora in params.loras])
    for path in params.embeddings:
        pipe.load_textual_inversion(path)


@dataclass
class Rendered:
    """A job's images in memory, each with the parameters its PNG stores, and the recorded guidance if asked."""

    images: list  # PIL images: one per seed, or one strip for a sweep
    params: list[dict]  # the PNG parameters of each image
    guidance: object | None = None  # RecordedGuidance when ``record_guidance`` was asked


@dataclass
class Prepared:
    """A job made ready on a loaded pipeline: edits with the model's defaults filled in, its h-space offsets
    (files, library), recorded guidance, and the PNG metadata every image of the job shares."""

    params: GenerationParams
    applied: list
    library: object | None
    reuse: object | None
    meta: dict


def job_files(params: GenerationParams) -> tuple:
    """The files a job reads, loaded and checked (no model needed): recorded guidance, directions, library."""
    from segakit.sega.recorded import RecordedGuidance

    reuse = RecordedGuidance.load(params.apply_guidance) if params.apply_guidance else None
    return reuse, load_directions(params.directions), _library(params)


def prepare(params: GenerationParams, pipe, files: tuple | None = None) -> Prepared:
    """Check ``params`` against ``pipe`` (adapters already loaded) and load what its generation needs
    (``files``: what :func:`job_files` returned, when the caller loaded them already)."""
    from segakit import __version__

    reuse, directions, library = files if files is not None else job_files(params)
    for d, _ in directions:
        d.check_model(pipe.family.denoiser)
    applied = [d.at(strength) for d, strength in directions]
    if library is not None:
        names = ([SAFE] if params.safe else []) + (library.enhance(params.prompt) if params.enhance else [])
        for name in names:
            library.direction(name).check_model(pipe.family.denoiser)
            applied.append(library.direction(name).at(_strength(library, params, name)))
    # unset edit fields take the model's defaults, as in Python; the PNG stores the values used
    params = replace(params, edits=[e.with_defaults(pipe.edit_defaults) for e in params.edits])
    defaults = pipe.edit_defaults
    meta = {**params.to_json(), "segakit_version": __version__,
            "edit_defaults": {"scale": defaults.scale, "threshold": defaults.threshold, "warmup": defaults.warmup}}  # fmt: skip
    return Prepared(params, applied, library, reuse, meta)


def sample(pipe, job: Prepared, prompts: list[str], seeds: list[int], edits: list[Edit] | None = None,
           record: bool = False, progress: ProgressFn | None = None, guidance_rows: slice | None = None,
           edit_groups: list | None = None):  # fmt: skip
    """One pipeline call: image ``i`` from ``prompts[i]`` and its own generator seeded ``seeds[i]``; every other
    parameter from ``job`` (of its recorded guidance, the images ``guidance_rows``; ``edit_groups``: each group of
    images with its own concepts, :mod:`segakit.sega.groups`, instead of the job's). Returns the pipeline's output
    and the fair-generation draws (or None)."""
    import torch

    from segakit.sega.fair import fair_generate

    params = job.params
    gens = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
    fair = _fair(job.library, params, seeds, pipe.family.denoiser)
    sega_fair = fair if params.fair_method == "sega" else None  # Fair Diffusion: one call per drawn value
    generate = pipe if sega_fair is None else partial(fair_generate, pipe, fair=sega_fair)
    result = generate(
        prompts if len(set(prompts)) > 1 else prompts[0], negative_prompt=params.negative_prompt,
        num_inference_steps=params.steps, guidance_scale=params.guidance, height=params.height, width=params.width,
        eta=params.eta, true_cfg_scale=params.true_cfg, num_images_per_prompt=1 if len(set(prompts)) > 1 else len(seeds), generator=gens,
        edits=([] if edit_groups is not None else list(params.edits)) if edits is None else edits, edit_groups=edit_groups,
        edit_momentum_scale=params.momentum_scale, edit_mom_beta=params.momentum_beta,
        quantile_over=params.quantile_over, edit_refresh=params.edit_refresh, guidance_refresh=params.guidance_refresh, output_type="pil", record_guidance=record,
        sem_guidance=None if job.reuse is None else job.reuse.guidance[:, guidance_rows or slice(None)],
        directions=job.applied + ([fair] if fair is not None and sega_fair is None else []),
        callback=(lambda i, t, x: progress(1)) if progress else None,
    )  # fmt: skip
    return result, fair


def with_idle_warning(metas: list[dict], pipe) -> tuple[list[dict], str | None]:
    """``metas`` with the sentence for concepts that never acted in ``pipe``'s last call (``warnings``), and that
    sentence (None when every concept acted): every writer of PNGs (generate, batch) records it the same way."""
    idle = idle_warning(idle_concepts(pipe))
    return ([{**m, "warnings": [idle]} for m in metas] if idle is not None else metas), idle


def image_meta(job: Prepared, seed: int, prompt: str | None = None, fair=None, index: int = 0) -> dict:
    """The parameters a PNG of ``job`` carries: the job's, with this image's seed (and prompt, and fair draw)."""
    choice = {"fair_choice": fair.choices[index]} if fair is not None else {}
    return {**job.meta, "seed": seed, "num_images": 1, **({"prompt": prompt} if prompt is not None else {}), **choice}


def run(params: GenerationParams, out: Path, pipe=None, device: str = "cpu", dtype=None,
        progress: ProgressFn | None = None, save_guidance: Path | None = None,
        paths: Sequence[Path] | None = None, chunk: int = MAX_CHUNK, warn: Callable[[str], None] | None = None) -> list[Path]:  # fmt: skip
    """Generate the job's images (or sweep strip) and write them as PNGs with their parameters.

    ``save_guidance`` records the semantic guidance of the edits and saves it (safetensors) for reuse
    with ``apply_guidance`` on other prompts with the same seed and steps. ``paths`` are the PNGs to write
    (planned and checked by the caller; default: :func:`output_paths` of ``out``). Images are generated
    ``chunk`` at a time and each chunk is written before the next starts, so a large count streams to disk.
    """
    from segakit.core.images import save_png

    params.validate()
    if save_guidance is not None and params.sweep is not None:
        raise UserError("--save-guidance records one generation; it cannot be combined with --sweep.")
    if save_guidance is not None and params.guidance is not None and params.guidance <= 1:
        raise UserError("No guidance to record: semantic guidance needs --guidance above 1.")
    files = job_files(params)  # bad guidance, direction and library files are refused before anything is written
    n_files = 1 if params.sweep is not None else params.num_images
    if paths is None:
        paths = output_paths(Path(out), n_files, "sweep" if params.sweep is not None else "image")
    relative = None
    if params.apply_guidance:  # stored relative to the PNG, so --from-png finds it wherever it runs
        relative = os.path.relpath(Path(params.apply_guidance).resolve(), Path(paths[0]).resolve().parent)
    written: list[Path] = []

    def write(first: int, images: list, metas: list[dict]) -> None:
        for i, (image, meta) in enumerate(zip(images, metas)):
            written.append(
                save_png(image, paths[first + i], {**meta, "apply_guidance": relative} if relative else meta)
            )

    result = render(params, pipe, device, dtype, progress, record_guidance=save_guidance is not None, chunk=chunk,
                    on_images=write, files=files, warn=warn)  # fmt: skip
    if save_guidance is not None:
        result.guidance.save(save_guidance)
    return written


def render(params: GenerationParams, pipe=None, device: str = "cpu", dtype=None,
           progress: ProgressFn | None = None, record_guidance: bool = False,
           chunk: int | None = None, on_images: Callable[[int, list, list[dict]], None] | None = None,
           files: tuple | None = None, warn: Callable[[str], None] | None = None) -> Rendered:  # fmt: skip
    """Generate the job's images (or sweep strip) in memory, each with the parameters its PNG stores.

    ``progress`` is called after every denoising step; an exception it raises stops the job there.
    ``chunk``: images per pipeline call (default: all at once). ``on_images(first, images, params)`` takes each
    chunk as it is done (then the result holds no images, so a large job streams instead of piling up).
    ``files``: what :func:`job_files` returned, when the caller loaded them already.
    """
    import torch

    from segakit.core.images import grid
    from segakit.sega.pipeline import RecordedGuidance, SegaPipeline
    from segakit.sega.recorded import check_fits, first_image

    params.validate()
    files = files if files is not None else job_files(params)  # all checked before the model loads
    reuse, offset = files[0], 0
    if reuse is not None:
        count = 1 if params.sweep is not None else params.num_images
        check_fits(
            reuse,
            params.apply_guidance,
            params.steps,
            count,
            model_key(params.model),
            params.height,
            params.width,
            params.seed,
        )
        offset = first_image(reuse, params.seed, count)
    if pipe is None:
        pipe = SegaPipeline.from_pretrained(params.model, dtype=dtype or torch.float32).to(device)
    pipe.set_progress_bar_config(disable=True)
    job = prepare(params, pipe, files)
    load_adapters(pipe, params)
    params, meta = job.params, job.meta
    if params.sweep is not None:
        frames = []
        for s in params.sweep:
            frames.extend(sample(pipe, job, [params.prompt], [params.seed], [replace(params.edits[0], scale=float(s))],
                                 progress=progress, guidance_rows=slice(offset, offset + 1))[0].images)  # fmt: skip
        edit = params.edits[0]
        labels = [f"{'-' if edit.reverse else '+'}{edit.prompt} {s:g}" for s in params.sweep]
        sheet = grid(frames, cols=len(frames), labels=labels, scale=max(1, 128 // frames[0].size[0]))
        if on_images is not None:
            on_images(0, [sheet], [{**meta, "num_images": 1}])
            return Rendered([], [])
        return Rendered([sheet], [{**meta, "num_images": 1}])
    step = max(1, chunk or params.num_images)
    images, metas, recorded = [], [], []
    warned: set[str] = set()
    for first in range(0, params.num_images, step):
        seeds = [params.seed + i for i in range(first, min(first + step, params.num_images))]
        result, fair = sample(pipe, job, [params.prompt] * len(seeds), seeds, record=record_guidance, progress=progress,
                              guidance_rows=slice(offset + first, offset + first + len(seeds)))  # fmt: skip
        if record_guidance:
            if result.guidance is None:
                raise UserError("No guidance to record: semantic guidance needs --guidance above 1.")
            recorded.append(result.guidance)
        chunk_metas = [image_meta(job, seed, fair=fair, index=i) for i, seed in enumerate(seeds)]
        chunk_metas, idle = with_idle_warning(chunk_metas, pipe)
        if idle is not None:  # honest results: the PNGs record it, and the caller hears it once
            if warn is not None and idle not in warned:
                warned.add(idle)
                warn(idle)
        if on_images is not None:
            on_images(first, list(result.images), chunk_metas)
        else:
            images.extend(result.images)
            metas.extend(chunk_metas)
    guidance = None
    if record_guidance:
        guidance = RecordedGuidance(torch.cat([r.guidance.cpu() for r in recorded], dim=1),
                                    {**recorded[0].metadata, "model": model_key(params.model), "seed": params.seed, "num_images": params.num_images})  # fmt: skip
    return Rendered(images, metas, guidance)
