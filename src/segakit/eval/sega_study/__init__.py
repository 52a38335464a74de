"""segakit.eval.sega_study: SEGA's face-attribute study (the paper's Tables 1-2 and Figures 1, 5, 10) on the faces world, with a baseline.

    segakit eval sega --out docs/results/sega          # N = 250 seeds; see docs/results/sega/notes.md

The paper asked people to judge 250 generated faces; here the faces world's oracle judges them, which also
turns what the paper showed only in pictures into numbers. For N seeds of a neutral prompt:

- additions of ten attributes (gender both ways, glasses, smile, bald, beard, hat, curls, makeup, gray hair,
  bangs), each on the seeds whose plain image lacks it; removals (no glasses, no smile, no beard) on the seeds
  that have it; two combinations of four edits (Table 2: at least 1, 2, 3, all 4 succeed);
- isolation: the share of the attributes an edit did not target that the oracle still reads the same;
- composition preservation: SSIM and RMSE to the unedited image of the same seed, and the cosine similarity
  of the oracle's features;
- monotonicity: Spearman correlation between edit scale and the oracle's probability of the edit's goal over
  a sweep of scales;
- uniqueness: a glasses guidance recorded on the neutral prompt, re-applied to five other prompts with the same
  seeds (``sem_guidance=``);
- the baseline: the same attributes asked for by rewriting the prompt, scored the same way.

Resumable: every unit of work (one edit on its seeds, one sweep, one figure) is cached under ``DIR/cache/`` in
a file named by a hash of everything it depends on (model and oracle weights, prompt, seeds, steps, edit
parameters, batch), written atomically; a rerun skips what is done. Deterministic: one generator per seed, and
all measurements are taken on the 8-bit images that the figures show, so a resumed run reports exactly what an
uninterrupted one does.
"""

from segakit.eval.sega_study.config import (
    PAPER,
    UNIQUE_PROMPTS,
    StudyConfig,
    StudyProgress,
)
from segakit.eval.sega_study.measures import (
    ATTRS,
    COLUMNS,
    COMPOSITION,
    at_least,
    composition,
    decode,
    encode,
    goal_probability,
    monotonicity,
    quantize,
    rate,
    to_float,
    wilson,
)
from segakit.eval.sega_study.report import markdown, run_study, write_report
from segakit.eval.sega_study.run import (
    CACHE_VERSION,
    COMPUTE_KEY,
    Cache,
    Study,
    Unit,
    fingerprint,
    pipeline_fingerprint,
)
from segakit.eval.sega_study.summary import both_succeeded, json_ready, summarize

__all__ = [
    "PAPER",
    "UNIQUE_PROMPTS",
    "StudyConfig",
    "StudyProgress",
    "ATTRS",
    "COLUMNS",
    "COMPOSITION",
    "at_least",
    "composition",
    "decode",
    "encode",
    "goal_probability",
    "monotonicity",
    "quantize",
    "rate",
    "to_float",
    "wilson",
    "markdown",
    "run_study",
    "write_report",
    "CACHE_VERSION",
    "COMPUTE_KEY",
    "Cache",
    "Study",
    "Unit",
    "fingerprint",
    "pipeline_fingerprint",
    "both_succeeded",
    "json_ready",
    "summarize",
]
