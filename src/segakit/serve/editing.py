"""The edit endpoint and the Edit tab: one :class:`segakit.editing.EditPipeline` on the server's model, run as a
worker job like a generation (queued, cancellable, logged).

The pipeline shares the loaded model's components; on an SD3 or FLUX model it is a
:class:`segakit.editing.flow_pipeline.FlowEditPipeline` (flowedit, invert, sega). On the embedded model it brings the model's own small
captioner and caption writer (``segakit/assets``), so the request needs only the image and the instruction;
captions in the request skip them. Other models have neither, so a request names the source caption and the captions after the edit (or, for
``method="sega"``, the concepts); a request without them gets the editing pipeline's own one-sentence 400.
"""

from __future__ import annotations

from segakit.editing.params import EditParams, default_guidance, is_flow


def edit_params(req, model: str, limits) -> EditParams:
    """An :class:`EditParams` from an ``/api/edit`` request, with the defaults of the server's model (a U-Net's, or
    an SD3 or FLUX model's: docs/flow.md); checked against the server's caps."""
    from segakit.core.errors import UserError, arg
    from segakit.core.loading import model_family

    family = model_family(model) or "unet"  # the server has loaded it: a hub id's index is in the cache
    flow = is_flow(family)
    method = req.method or ("flowedit" if flow else "onthefly")
    inversion, guidance = req.inversion, req.guidance
    if not flow:  # left out: the inversion's own guidance, as segakit edit without a recipe's
        inversion = inversion or "ddim"
        guidance = default_guidance(method, inversion) if guidance is None else guidance
    if len(req.concepts) > limits.max_concepts:
        raise UserError(f"{len(req.concepts)} {arg('concepts')} is over this server's limit of {limits.max_concepts}.")
    if req.size is not None and req.size > limits.max_side:
        raise UserError(f"{arg('size')} {req.size} is over this server's limit of {limits.max_side} pixels a side.")
    params = EditParams(
        instruction=req.instruction, model=model, method=method, inversion=inversion, source_caption=req.source_caption,
        captions_before=list(req.captions_before), captions_after=list(req.captions_after), num_captions=req.captions,
        steps=req.steps, guidance_scale=guidance, seed=req.seed, concepts=list(req.concepts),
        mask=req.mask, blend=req.blend, threshold=req.threshold, sega_mask=req.sega_mask,
        blend_dilate=req.blend_dilate, source_guidance=req.source_guidance, skip=req.skip, eta=req.eta,
        eta_stop=req.eta_stop, gamma=req.gamma, size=req.size,
    )  # fmt: skip
    if req.steps is None:  # left out: the method's default, or what the server allows
        params.steps = None
        params.validate(family)
        params.steps = min(params.steps, limits.max_steps)
    if not 1 <= params.steps <= limits.max_steps:
        raise UserError(f"{arg('steps')} {params.steps} is outside 1 to this server's limit of {limits.max_steps}.")
    return params.validate(family)


def submit_edit(service, image, params: EditParams):
    """Queue the edit of ``image``; the job's result is a list with one :class:`segakit.serve.service.Image`."""
    from segakit import __version__
    from segakit.core.images import png_bytes
    from segakit.editing.image import to_rgb
    from segakit.editing.pipeline import EditPipeline
    from segakit.serve.service import Image

    if getattr(service, "edit_pipe", None) is None:
        service.edit_pipe = EditPipeline.from_pipe(service.pipe, model_name=service.config.model)

    def task(check) -> list[Image]:
        check()
        result = service.edit_pipe.run(params, to_rgb(image), callback=lambda done, total: check())
        meta = {**result.params.to_json(), "kind": "edit", "segakit_version": __version__, **result.metadata}
        # the captions the models wrote, as `segakit edit` records them, so the PNG shows and repeats them
        meta["captions_before"], meta["captions_after"] = list(result.captions_before), list(result.captions_after)
        return [Image(png_bytes(result.images[0], meta), meta)]

    return service.worker.submit("edit", params.to_json(), task)
