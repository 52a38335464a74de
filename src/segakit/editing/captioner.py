"""The captioner: an image in, one caption out (BLIP in the paper), through transformers'
``BlipForConditionalGeneration`` and ``BlipProcessor`` from a local folder with safetensors weights.

Greedy decoding, so a caption is deterministic. The embedded model's own small BLIP captioner (trained on world
renders) is not built yet; until it is, the embedded model needs a source caption from the user.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from segakit.core.errors import UserError
from segakit.editing.caption_writer import check_model_folder


class Captioner:
    """``Captioner.from_pretrained(folder)(image) -> "a photo of ..."``."""

    def __init__(self, model, processor, max_new_tokens: int = 30, prompt: str | None = None) -> None:
        self.model, self.processor = model.eval(), processor
        self.max_new_tokens, self.prompt = max_new_tokens, prompt

    @classmethod
    def from_pretrained(cls, folder: str | Path, **kwargs) -> Captioner:
        from transformers import BlipForConditionalGeneration, BlipProcessor

        path = check_model_folder(folder, "Captioner")
        try:
            model = BlipForConditionalGeneration.from_pretrained(path, use_safetensors=True, local_files_only=True)
            processor = BlipProcessor.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"Could not load the captioner in {str(folder)!r}: {first}") from None
        return cls(model, processor, **kwargs)

    @torch.no_grad()
    def __call__(self, image: Image.Image) -> str:
        device = next(self.model.parameters()).device
        inputs = self.processor(images=image.convert("RGB"), text=self.prompt, return_tensors="pt")
        inputs = {k: v.to(device) for k, v in inputs.items()}
        out = self.model.generate(**inputs, do_sample=False, max_new_tokens=self.max_new_tokens)
        return self.processor.decode(out[0], skip_special_tokens=True).strip()
