"""Editing real images on rectified-flow transformers (SD3, FLUX): FlowEdit, RF inversion, SEGA on an inversion.

>>> from segakit import SegaPipeline
>>> from segakit.editing.flow import FlowEditor
>>> editor = FlowEditor(SegaPipeline.from_pretrained(FOLDER))            # an SD3 or FLUX folder
>>> out = editor.flowedit(image, "a face of a woman", "a face of a woman with glasses")
>>> out = editor.sega(image, "a face of a woman", edits=[Edit("glasses", scale=5, warmup=2)])

- :meth:`FlowEditor.flowedit`: FlowEdit (:mod:`segakit.editing.flowedit`), inversion-free; the paper's settings per
  family by default (SD3: 50 steps, edit from step 17, guidance 3.5 / 13.5; FLUX: 28 steps, from step 4, 1.5 / 5.5).
- :meth:`FlowEditor.invert` and :meth:`FlowEditor.edit`: RF inversion with the source prompt, then sampling with
  the target prompt (RF-Inversion's controllers ``gamma`` / ``eta`` optional, :mod:`segakit.core.flow_inversion`).
- :meth:`FlowEditor.sega`: LEDITS++'s idea on a flow: invert with the source caption, then sample the same caption
  from the inverted noise with SEGA concepts; without concepts it gives back the inversion's reconstruction.

The captions may come from the instruction chain (captioner + caption writer) as OnTheFly's do; on the embedded
U-Net model that chain is ``segakit edit``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from segakit.core.conditioning import Conditioning
from segakit.core.errors import UserError
from segakit.core.families import family_for
from segakit.core.flow_inversion import invert, sample
from segakit.editing.flowedit import flowedit, skipped_steps
from segakit.editing.image import fit, to_tensor

#: FlowEdit's published settings per family (the paper's Table / code defaults)
PAPER = {
    "sd3": {"steps": 50, "strength": 33 / 50, "source_guidance": 3.5, "target_guidance": 13.5, "mask": 0.0},
    "flux": {"steps": 28, "strength": 24 / 28, "source_guidance": 1.5, "target_guidance": 5.5, "mask": 0.0},
}
#: The embedded flow model's FlowEdit settings, chosen on world pairs of seed 2 (apart from the editing study's seeds
#: 0 and 1) with ``python benchmarks/flowedit_settings.py --pairs 48``: editing more of the schedule (40 of 50 steps)
#: at a lower target guidance drew as many targets as SD3's paper settings (0.958 against 0.938) and kept more of the
#: rest (0.869 against 0.847); LEDITS++'s noise mask at 0.8 on each step then kept more again (96 pairs of seed 2 on
#: the step-14,000 weights: 0.917 success, 0.904 kept; a target guidance of 10 with it 0.938 / 0.887);
#: docs/results/flow/report.md.
EMBEDDED_FLOW_FLOWEDIT = {"steps": 50, "strength": 0.8, "source_guidance": 3.5, "target_guidance": 7.5, "mask": 0.8}


def flowedit_defaults(family: str, model: str | Path | None = None) -> dict[str, float]:
    """FlowEdit's settings where none are given: the embedded flow model's own for it, else the paper's for
    ``family`` ("sd3", "flux")."""
    from segakit.core.embedded_flow import EMBEDDED_FLOW
    from segakit.core.loading import model_key

    if model is not None and model_key(model) == EMBEDDED_FLOW:
        return dict(EMBEDDED_FLOW_FLOWEDIT)
    return dict(PAPER[family])


@dataclass
class FlowEditOutput:
    images: list[Image.Image]
    latents: torch.Tensor  # the edited latents (batch, channels, h, w)
    source_latents: torch.Tensor
    settings: dict = field(default_factory=dict)


class FlowEditor:
    """Real-image editing on a :class:`~segakit.SegaPipeline` of a rectified-flow family."""

    def __init__(self, pipe) -> None:
        family = getattr(pipe, "family", None) or family_for(
            pipe
        )  # a SegaPipeline's, or an adapter of diffusers' pipeline
        if not family.flow:
            raise UserError(
                f"FlowEditor needs an SD3 or FLUX model; this is a {family.name.upper()} model (use EditPipeline)."
            )
        self.pipe, self.family = pipe, family

    # ---- pieces

    def size(self) -> int:
        return self.family.default_size()

    @torch.no_grad()
    def encode(self, image: Image.Image, size: int | None = None) -> torch.Tensor:
        """The image's latents as the denoiser sees them (the posterior's mode, the family's scaling)."""
        vae, fam = self.pipe.vae, self.family
        x = to_tensor(fit(image, size or self.size())).to(vae.device, vae.dtype)
        return fam.from_vae(vae.encode(x).latent_dist.mode()).float()

    def sigmas(self, steps: int, side: int) -> torch.Tensor:
        fam = self.family
        fam.set_timesteps(steps, self.pipe.device, side, side)
        return self.pipe.scheduler.sigmas.to(self.pipe.device, torch.float32)

    def velocity(self, prompt: str | Conditioning, guidance: float):
        """``v(x, sigma)`` for ``prompt`` (a text, or its conditioning row, e.g. moved along an edit direction) with
        the family's guidance: classifier-free (the empty prompt as unconditional) on SD3, the distilled guidance
        embedding on FLUX."""
        fam, device = self.family, self.pipe.device
        cond = fam.encode([prompt], device) if isinstance(prompt, str) else prompt
        cfg = fam.has_uncond(guidance, None, 1.0)
        rows = cond
        if cfg:
            rows = type(cond).cat([fam.uncond(None, cond, device), cond])
        fam.guidance(guidance, 1.0)

        @torch.no_grad()
        def v(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            n = x.shape[0]
            t = (sigma * 1000).reshape(1).to(x.dtype)
            if not cfg:
                return fam.predict(x, t, rows.repeat_rows(n) if n > 1 else rows).float()
            out = fam.predict(
                torch.cat([x, x]), t, type(rows).cat([rows.rows(0, 1).repeat_rows(n), rows.rows(1, 2).repeat_rows(n)])
            )
            e0, ep = out.float().chunk(2)
            return e0 + guidance * (ep - e0)

        return v

    @torch.no_grad()
    def images(self, latents: torch.Tensor) -> list[Image.Image]:
        latents = latents.to(self.family.dtype)
        if hasattr(self.pipe, "decode"):  # a SegaPipeline: its own decoding
            return self.pipe.decode(latents, "pil", self.pipe.device)[0]
        vae = self.pipe.vae
        decoded = vae.decode(self.family.to_vae(latents.to(vae.dtype)), return_dict=False)[0]
        return self.pipe.image_processor.postprocess(decoded, output_type="pil")

    # ---- methods

    def flowedit(self, image: Image.Image, source_prompt: str | Conditioning, target_prompt: str | Conditioning,
                 steps: int | None = None, strength: float | None = None, source_guidance: float | None = None,
                 target_guidance: float | None = None, n_avg: int = 1, seed: int = 0,
                 callback: Progress | None = None, size: int | None = None, mask: float | None = None) -> FlowEditOutput:  # fmt: skip
        """FlowEdit from ``source_prompt`` to ``target_prompt``; unset settings are :func:`flowedit_defaults` (the
        paper's for the family; the embedded flow model's own).
        ``callback(done, total)`` after each edited step; ``size``: the side the image is edited at (default:
        the model's); ``mask``: LEDITS++'s noise mask on each step at this quantile (0: none, the paper's; None: the
        model's default, none but on the embedded flow model)."""
        default = flowedit_defaults(self.family.name, getattr(self.pipe, "name_or_path", None))
        steps = steps or default["steps"]
        strength = default["strength"] if strength is None else strength
        if not 0.0 <= strength <= 1.0:
            raise UserError(f"strength {strength!r} is outside [0, 1]; 0 returns the image, 1 edits from pure noise.")
        if n_avg < 1:
            raise UserError(f"n_avg {n_avg!r} must be 1 or more.")
        mask = default["mask"] if mask is None else mask
        if not 0.0 <= mask < 1.0:
            raise UserError(f"mask {mask!r} is outside [0, 1): the quantile the noise mask keeps from (0: no mask).")
        gs = default["source_guidance"] if source_guidance is None else source_guidance
        gt = default["target_guidance"] if target_guidance is None else target_guidance
        x_src = self.encode(image, size)
        v_src, v_tar = self.velocity(source_prompt, gs), self.velocity(target_prompt, gt)
        sigmas = self.sigmas(steps, size or self.size())
        skip = skipped_steps(steps, strength)
        tick = _ticker(callback, (steps - skip) * n_avg)
        z = flowedit(lambda a, b, s: tick((v_src(a, s), v_tar(b, s))), x_src, sigmas, skip, n_avg,
                     torch.Generator().manual_seed(seed), mask)  # fmt: skip
        settings = {
            "method": "flowedit",
            "steps": steps,
            "strength": strength,
            "source_guidance": gs,
            "target_guidance": gt,
            "n_avg": n_avg,
            "mask": mask,
        }
        return FlowEditOutput(self.images(z), z, x_src, settings)

    def invert(self, image: Image.Image, prompt: str | Conditioning, steps: int = 28, guidance: float = 1.0,
               gamma: float = 0.0, seed: int = 0, callback: Progress | None = None,
               size: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
        """(noise, sigmas, source latents): the rectified-flow inversion of ``image`` under ``prompt``;
        ``callback(done, steps)`` after each step."""
        x_src = self.encode(image, size)
        sigmas = self.sigmas(steps, size or self.size())
        tick = _ticker(callback, steps)
        v = self.velocity(prompt, guidance)
        noise, _ = invert(lambda x, s: tick(v(x, s)), x_src, sigmas, gamma, torch.Generator().manual_seed(seed))
        return noise, sigmas, x_src

    def edit(self, image: Image.Image, source_prompt: str | Conditioning, target_prompt: str | Conditioning,
             steps: int = 28, guidance: float = 1.0, gamma: float = 0.0, eta: float = 0.0, eta_stop: int | None = None,
             seed: int = 0, callback: Progress | None = None, size: int | None = None) -> FlowEditOutput:  # fmt: skip
        """Invert under ``source_prompt``, sample ``target_prompt`` from the noise (RF-Inversion's controllers
        ``gamma`` and ``eta`` off by default; ``eta`` acts on steps [0, ``eta_stop``)); ``callback(done, total)``
        after each of the 2 x ``steps`` steps."""
        first, second = _halves(callback, steps)
        noise, sigmas, x_src = self.invert(image, source_prompt, steps, guidance, gamma, seed, first, size)
        tick = _ticker(second, steps)
        v = self.velocity(target_prompt, guidance)
        z = sample(lambda x, s: tick(v(x, s)), noise, sigmas, x_src, eta, 0, eta_stop)
        settings = {
            "method": "rf-inversion",
            "steps": steps,
            "guidance": guidance,
            "gamma": gamma,
            "eta": eta,
            "eta_stop": eta_stop,
        }
        return FlowEditOutput(self.images(z), z, x_src, settings)

    def sega(self, image: Image.Image, source_prompt: str, edits: Sequence | None, steps: int = 28,
             guidance: float = 1.0, gamma: float = 0.0, seed: int = 0, callback: Progress | None = None,
             size: int | None = None, **kwargs) -> FlowEditOutput:  # fmt: skip
        """SEGA concepts on an inverted image (LEDITS++'s idea on a flow): invert under ``source_prompt`` at
        ``guidance``, then run the pipeline on the same prompt and guidance from the inverted noise with ``edits``
        (or, with ``edits=None``, the concepts in diffusers' argument names, ``editing_prompt=...``, in ``kwargs``);
        ``callback(done, total)`` after each of the 2 x ``steps`` steps. Needs a SegaPipeline (its sampling loop)."""
        if not hasattr(self.pipe, "edit_defaults"):
            raise UserError(
                "SEGA on a flow inversion runs SegaPipeline's sampling loop; give FlowEditor (or EditPipeline.from_pipe) "
                "a SegaPipeline, e.g. SegaPipeline.from_pretrained(FOLDER)."
            )
        first, second = _halves(callback, steps)
        noise, _, x_src = self.invert(image, source_prompt, steps, guidance, gamma, seed, first, size)
        side = size or self.size()
        tick = _ticker(second, steps)
        out = self.pipe(source_prompt, latents=noise.to(self.family.dtype), edits=None if edits is None else list(edits),
                        num_inference_steps=steps, guidance_scale=guidance, height=side, width=side, output_type="latent",
                        callback_on_step_end=lambda pipe, i, t, tensors: tick(None), **kwargs)  # fmt: skip
        z = out.images.float()
        settings = {
            "method": "sega-inversion",
            "steps": steps,
            "guidance": guidance,
            "gamma": gamma,
            "edits": [e.__dict__ for e in out.edits],
        }
        return FlowEditOutput(self.images(z), z, x_src, settings)


Progress = Callable[[int, int], None]  # callback(done, total), as EditPipeline's


def _ticker(callback: Progress | None, total: int) -> Callable:
    """``tick(value) -> value`` that reports one more step done to ``callback`` (nothing without one)."""
    done = [0]

    def tick(value):
        if callback is not None:
            done[0] += 1
            callback(done[0], total)
        return value

    return tick


def _halves(callback: Progress | None, steps: int) -> tuple[Progress | None, Progress | None]:
    """Two callbacks for a two-pass method (invert, then sample) reporting to ``callback`` over 2 x ``steps``."""
    if callback is None:
        return None, None
    return (lambda done, _: callback(done, 2 * steps)), (lambda done, _: callback(steps + done, 2 * steps))
