"""Several generations in one pipeline call: the server's requests that can share a denoiser batch.

    outcomes = render_together([params_a, params_b], pipe)   # each a Rendered, or the exception its request raised

The generations must share a key (:func:`segakit.jobs.batching.call_key` with ``concepts_apart=True``): they differ
only in prompt, seed, image count and concepts. Each keeps its own images' generators (seed, seed + 1, ...) and its
own concepts and SEGA options, as one edit group of the call (:mod:`segakit.sega.groups`), so its images are those it
gets alone up to the last bits of float32 (the denoiser batch differs: ``docs/serving.md``, batching). A generation
whose files or values are refused while it is prepared comes back as its :class:`UserError`; the others still run.
"""

from __future__ import annotations

from collections.abc import Sequence

from segakit.jobs.generate import GenerationParams, ProgressFn, Rendered, image_meta, prepare, sample


def render_together(
    params: Sequence[GenerationParams], pipe, progress: ProgressFn | None = None
) -> list[Rendered | Exception]:
    """Generate every generation of ``params`` in one pipeline call on ``pipe``; one outcome per generation, in order.
    ``progress`` is called after every denoising step (an exception it raises stops the call)."""
    from segakit.core.errors import UserError
    from segakit.sega.groups import EditGroup
    from segakit.sega.honest import idle_in, idle_warning

    outcomes: list[Rendered | Exception] = list(params)  # placeholders, each replaced below
    jobs, places = [], []
    for i, p in enumerate(params):
        try:
            p.validate()
            jobs.append(prepare(p, pipe))
            places.append(i)
        except UserError as exc:
            outcomes[i] = exc
    if not jobs:
        return outcomes
    prompts = [j.params.prompt for j in jobs for _ in range(j.params.num_images)]
    seeds = [j.params.seed + k for j in jobs for k in range(j.params.num_images)]
    groups = [EditGroup(j.params.num_images, j.params.edits, j.params.momentum_scale, j.params.momentum_beta,
                        j.params.quantile_over, j.params.edit_refresh) for j in jobs]  # fmt: skip
    result, _ = sample(pipe, jobs[0], prompts, seeds, progress=progress, edit_groups=groups)
    concepts, first = pipe.last_guidance, 0
    for g, (i, job) in enumerate(zip(places, jobs)):
        n = job.params.num_images
        metas = [image_meta(job, job.params.seed + k) for k in range(n)]
        if concepts is not None:  # this request's concepts that never acted, said in its PNGs as render() does
            idle = idle_warning(idle_in(concepts.group(g)))
            metas = [{**m, "warnings": [idle]} for m in metas] if idle is not None else metas
        outcomes[i] = Rendered(list(result.images[first : first + n]), metas)
        first += n
    return outcomes
