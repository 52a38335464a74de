"""The captioner: an image in, one caption out (BLIP in the paper), through transformers'
``BlipForConditionalGeneration`` and ``BlipProcessor`` from a local folder with safetensors weights.

Greedy decoding, so a caption is deterministic. BERT's tokenizer splits hyphenated words and its decoder leaves
spaces around the hyphen ("t - shirt", as BLIP base writes too); they are closed again ("t-shirt").

The embedded model's captioner is a small BLIP of the same classes, trained on world renders
(``python -m segakit.train.captioner``), shipped in ``segakit/assets/captioner`` (:data:`EMBEDDED_CAPTIONER`).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from PIL import Image

from segakit.core.errors import UserError
from segakit.core.loading import quiet_loading
from segakit.editing.caption_writer import check_model_folder

EMBEDDED_CAPTIONER = Path(__file__).resolve().parents[1] / "assets" / "captioner"
_HYPHEN = re.compile(r"(?<=\w) - (?=\w)")


class Captioner:
    """``Captioner.from_pretrained(folder)(image) -> "a photo of ..."``."""

    def __init__(self, model, processor, max_new_tokens: int = 30, prompt: str | None = None) -> None:
        self.model, self.processor = model.eval(), processor
        self.max_new_tokens, self.prompt = max_new_tokens, prompt

    @classmethod
    def from_pretrained(cls, folder: str | Path, **kwargs) -> Captioner:
        from transformers import BlipForConditionalGeneration, BlipProcessor
        from transformers.utils import logging as hf_logging

        path = check_model_folder(folder, "Captioner")
        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # not the note that BLIP's image processor falls back to PIL without torchvision
        try:
            with quiet_loading():  # no loading bars unasked (segakit.core.loading)
                model = BlipForConditionalGeneration.from_pretrained(
                    path, use_safetensors=True, local_files_only=True, dtype=torch.float32
                )
                processor = BlipProcessor.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"Could not load the captioner in {str(folder)!r}: {first}") from None
        finally:
            hf_logging.set_verbosity(level)
        return cls(model, processor, **kwargs)

    @torch.no_grad()
    def __call__(self, image: Image.Image) -> str:
        device = next(self.model.parameters()).device
        inputs = self.processor(images=image.convert("RGB"), text=self.prompt, return_tensors="pt")
        inputs = {k: v.to(device) for k, v in inputs.items()}
        out = self.model.generate(**inputs, do_sample=False, max_new_tokens=self.max_new_tokens)
        return _HYPHEN.sub("-", self.processor.decode(out[0], skip_special_tokens=True).strip())
