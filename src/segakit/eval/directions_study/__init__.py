"""segakit.eval.directions_study: self-discovered directions measured against their peers on the faces world (issue 16).

    segakit eval directions --out docs/results/directions          # 200 seeds per prompt; see docs/results/directions/notes.md

For the same model and seeds (image i of every prompt and method from seed i), the oracle reads:

- fairness: for each role ("a doctor", "a nurse", "a firefighter", "a chef", a neutral face) and for presentation
  and skin, the deviation ratio of the plain model, fair generation with self-discovered directions and Fair
  Diffusion (SEGA edits ``+VALUE -OTHERS``; the same per-image draw), the share of images that show the value
  drawn for them, the share of the other attributes unchanged against the plain image of the same seed, and SSIM;
- safety: on horror prompts, the share read as horror for the plain model, the anti-horror direction, Safe Latent
  Diffusion (diffusers' ``StableDiffusionPipelineSafe`` at its four presets), the negative prompt and a SEGA reverse
  edit; on non-horror prompts, what each changes (collateral damage);
- text-enhancing: per attribute value a prompt names, the share of images that show it, plain and with
  ``--enhance`` (where the library has the value's direction);
- monotonicity (Spearman of the oracle's probability against the strength), composition (two directions at
  once), generalisation (the presentation directions, learned on a neutral face, per role);
- cost: generation with a direction against plain in one run; learning time per direction.

``config`` (sizes, prompts, arms), ``render`` (the one image-making function), ``sld`` (the SLD peer), ``measures``,
``run`` (sections, cache), ``figures``, ``report`` (:func:`run_study`, report.md/json).
"""

from segakit.eval.directions_study.config import (
    Arm,
    DirectionsStudyConfig,
    total_images,
)
from segakit.eval.directions_study.report import markdown, run_study
from segakit.eval.directions_study.run import Progress, Study

__all__ = ["Arm", "DirectionsStudyConfig", "Progress", "Study", "markdown", "run_study", "total_images"]
