"""The edit endpoint and the Edit tab: one :class:`segakit.editing.EditPipeline` on the server's model, run as a
worker job like a generation (queued, cancellable, logged).

The pipeline shares the loaded model's components. On the embedded model it brings the model's own small
captioner and caption writer (``segakit/assets``), so the request needs only the image and the instruction;
captions in the request skip them. Other models have neither, so a request names the source caption and the captions after the edit (or, for
``method="sega"``, the concepts); a request without them gets the editing pipeline's own one-sentence 400.
"""

from __future__ import annotations

from segakit.editing.params import EditParams, default_guidance


def edit_params(req, model: str, limits) -> EditParams:
    """An :class:`EditParams` from an ``/api/edit`` request; checked against the server's caps."""
    from segakit.core.errors import UserError, arg

    steps = min(25, limits.max_steps) if req.steps is None else req.steps  # left out: what the server allows
    if not 1 <= steps <= limits.max_steps:
        raise UserError(f"{arg('steps')} {steps} is outside 1 to this server's limit of {limits.max_steps}.")
    if len(req.concepts) > limits.max_concepts:
        raise UserError(f"{len(req.concepts)} {arg('concepts')} is over this server's limit of {limits.max_concepts}.")
    params = EditParams(
        instruction=req.instruction, model=model, method=req.method, inversion=req.inversion, source_caption=req.source_caption,
        captions_before=list(req.captions_before), captions_after=list(req.captions_after), num_captions=req.captions,
        steps=steps, guidance_scale=default_guidance(req.method, req.inversion) if req.guidance is None else req.guidance, seed=req.seed, concepts=list(req.concepts),
        mask=req.mask, blend=req.blend, threshold=req.threshold, sega_mask=req.sega_mask,
        blend_dilate=req.blend_dilate,
    )  # fmt: skip
    return params.validate()


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
