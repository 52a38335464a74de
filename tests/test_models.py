"""Loading: local folders (SD and SDXL), safetensors only, clear refusals."""

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from tiny_models import sd_components, sdxl_components

from segakit import SegaPipeline
from segakit.core.errors import UserError
from segakit.core.loading import resolve


@pytest.mark.parametrize("family", ["sd", "sdxl"])
def test_from_pretrained_local_folder(tmp_path, family):
    if family == "sd":
        pipe = StableDiffusionPipeline(
            **sd_components(tmp_path / "c"), safety_checker=None, feature_extractor=None, requires_safety_checker=False
        )
    else:
        pipe = StableDiffusionXLPipeline(**sdxl_components(tmp_path / "c"))
    pipe.save_pretrained(tmp_path / "m", safe_serialization=True)
    loaded = SegaPipeline.from_pretrained(tmp_path / "m")
    assert isinstance(loaded, SegaPipeline) and loaded.is_sdxl == (family == "sdxl")
    loaded.set_progress_bar_config(disable=True)
    pipe.set_progress_bar_config(disable=True)
    kw = dict(num_inference_steps=2, output_type="np")
    a = pipe("a face", **kw, generator=torch.Generator().manual_seed(0)).images
    b = loaded("a face", **kw, generator=torch.Generator().manual_seed(0)).images
    assert np.abs(a - b).max() <= 1e-4


def test_refusals(tmp_path):
    (tmp_path / "ckpt.ckpt").write_bytes(b"x")
    with pytest.raises(UserError, match="pickle"):
        resolve(tmp_path / "ckpt.ckpt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="model_index.json"):
        resolve(tmp_path / "empty")
    with pytest.raises(UserError, match="neither a local folder"):
        resolve("./no/such/folder")
    with pytest.raises(UserError, match="safetensors only"):
        SegaPipeline.from_pretrained(tmp_path / "empty", use_safetensors=False)
    assert resolve("owner/model") == "owner/model"
