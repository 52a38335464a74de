"""The demo gallery: plain samples, SEGA edits and an edit-strength strip on one model.

``segakit demo --out out/demo`` (what ``make demo`` runs) writes three PNGs, each carrying the
parameters that made it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from segakit.core.atomic import ensure_writable_dir
from segakit.sega.defaults import edit_defaults

PROMPT = "a face of a person"
DEMO_CONCEPTS = ("glasses", "smile", "hat", "beard")
STRIP_SEED = 5


DEMO_FILES = ("samples.png", "edits.png", "strength-strip.png")  # what run_demo writes, in order


def run_demo(out: Path, model: str = "embedded", steps: int = 25, seeds: int = 6, device: str = "cpu",
             progress=None) -> list[Path]:  # fmt: skip
    import torch

    from segakit import __version__
    from segakit.core.images import grid, save_png
    from segakit.sega.pipeline import SegaPipeline

    out = ensure_writable_dir(Path(out))
    pipe = SegaPipeline.from_pretrained(model).to(device)
    pipe.set_progress_bar_config(disable=True)
    step = (lambda i, t, x: progress(1)) if progress else None

    def gens(n: int, first: int = 0):
        return [torch.Generator().manual_seed(first + i) for i in range(n)]

    def sample(edits, n=seeds, first=0):
        return pipe(PROMPT, num_inference_steps=steps, num_images_per_prompt=n, generator=gens(n, first),
                    edits=edits, callback=step).images  # fmt: skip

    meta = {"segakit_version": __version__, "model": model, "prompt": PROMPT, "steps": steps}
    written = []

    plain = sample([], n=2 * seeds, first=100)
    written.append(
        save_png(
            grid(plain, cols=seeds, scale=2), out / DEMO_FILES[0], {**meta, "seeds": list(range(100, 100 + 2 * seeds))}
        )
    )

    base = edit_defaults(model)  # the model's own edit defaults (the embedded model's are tuned for it)
    edits = [replace(base, prompt=c) for c in DEMO_CONCEPTS]
    rows = [sample([])] + [sample([e]) for e in edits]
    labels = ["plain"] + [f"+{e.prompt}" for e in edits]
    sheet = grid([im for row in rows for im in row], cols=seeds, row_labels=labels, scale=2)
    written.append(save_png(sheet, out / DEMO_FILES[1], {**meta, "edits": [e.__dict__ for e in edits]}))

    # 0 to three times the model's default scale, through the default, on seed 5 (drawn without glasses by the
    # embedded model, so the strip shows them appear and, past the default, the rest of the face start to move)
    scales = [round(base.scale * f, 2) for f in (0, 0.5, 1, 1.5, 2, 3)]
    frames = [sample([replace(edits[0], scale=float(s))], n=1, first=STRIP_SEED)[0] for s in scales]
    strip = grid(frames, cols=len(frames), labels=[f"+glasses {s:g}" for s in scales], scale=2)
    written.append(save_png(strip, out / DEMO_FILES[2], {**meta, "sweep": scales, "seed": STRIP_SEED}))
    return written


def demo_steps(steps: int = 25, seeds: int = 6) -> int:
    """Denoising steps the demo runs (for a progress bar)."""
    return steps * (1 + 1 + len(DEMO_CONCEPTS) + 6)
