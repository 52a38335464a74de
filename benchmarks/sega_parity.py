"""Parity of SegaPipeline with diffusers' own pipelines, as numbers (the tests assert <= 1e-4).

Same small random-weight components (tests/tiny_models.py), float32, CPU, same seeds and steps:

    python benchmarks/sega_parity.py
"""

import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from diffusers import SemanticStableDiffusionPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline
from test_pipeline_parity import STEPS, THREE_EDITS
from tiny_models import sd_components, sdxl_components

from segakit import SegaPipeline

c = sd_components(Path(tempfile.mkdtemp()))
plain = StableDiffusionPipeline(**c, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
ref = SemanticStableDiffusionPipeline(**c, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
ours = SegaPipeline.from_pipe(plain)
for p in (plain, ref, ours):
    p.set_progress_bar_config(disable=True)
g = lambda n, s=0: [torch.Generator().manual_seed(s + i) for i in range(n)]
kw = dict(num_inference_steps=STEPS, output_type="np")
cases = {
    "1 edit": dict(prompt="a face", editing_prompt="glasses", edit_warmup_steps=2, edit_guidance_scale=6.0),
    "3 edits": dict(prompt="a face", **THREE_EDITS),
    "2 prompts x 2 images, 3 edits": dict(prompt=["a face", "a smiling face"], num_images_per_prompt=2, **THREE_EDITS),
}
for name, case in cases.items():
    n = len(case["prompt"]) * case.get("num_images_per_prompt", 1) if isinstance(case["prompt"], list) else 1
    d = np.abs(ref(**case, **kw, generator=g(n)).images - ours(**case, **kw, generator=g(n)).images).max()
    print(f"SEGA vs SemanticStableDiffusionPipeline, {name}: max |diff| = {d:.2e}")
d = np.abs(
    plain("a face", num_images_per_prompt=2, **kw, generator=g(2)).images
    - ours("a face", num_images_per_prompt=2, **kw, generator=g(2)).images
).max()
print(f"no edits vs StableDiffusionPipeline: max |diff| = {d:.2e}")
cx = sdxl_components(Path(tempfile.mkdtemp()))
px = StableDiffusionXLPipeline(**cx)
ox = SegaPipeline.from_pipe(px)
for p in (px, ox):
    p.set_progress_bar_config(disable=True)
d = np.abs(
    px("a face", num_images_per_prompt=2, **kw, generator=g(2)).images
    - ox("a face", num_images_per_prompt=2, **kw, generator=g(2)).images
).max()
print(f"no edits vs StableDiffusionXLPipeline: max |diff| = {d:.2e}")
out = ours("a face", **THREE_EDITS, record_guidance=True, **kw, generator=g(1))
rows = []
h = ours.unet.register_forward_pre_hook(lambda m, a: rows.append(a[0].shape[0]))
again = ours("a face", sem_guidance=out.guidance, **kw, generator=g(1)).images
h.remove()
print(
    f"recorded guidance re-applied (3 edits): max |diff| = {np.abs(again - out.images).max():.2e}, U-Net rows per step {sorted(set(rows))} (edited run: 2 + 3)"
)
