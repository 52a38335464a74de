"""Both editors run on SD 2.x-shaped (v-prediction) and SDXL-shaped pipelines (small random components)."""

import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from PIL import Image
from tiny_models import sd_components, sdxl_components

from segakit.editing.pipeline import EditPipeline


@pytest.mark.parametrize("family", ["sd2-v", "sdxl"])
@pytest.mark.parametrize("method", ["onthefly", "sega"])
def test_editors_run_on_other_families(tmp_path, family, method):
    if family == "sdxl":
        base = StableDiffusionXLPipeline(**sdxl_components(tmp_path))
    else:
        base = StableDiffusionPipeline(
            **sd_components(tmp_path, v_prediction=True),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    pipe = EditPipeline.from_pipe(base)
    image = Image.new("RGBA", (40, 30), (10, 200, 30, 255))
    out = pipe(image, "give her glasses", source_caption="a face", target_captions=["a face with glasses"], method=method,
               concepts=["+glasses"], num_inference_steps=2, output_type="np")  # fmt: skip
    assert out.images.shape == (1, pipe.resolution, pipe.resolution, 3) and pipe.resolution == 32
    assert 0 <= out.images.min() and out.images.max() <= 1 and not torch.isnan(torch.from_numpy(out.images)).any()
    assert len(out.losses) == (2 if method == "onthefly" else 0)
