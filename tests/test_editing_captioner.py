"""The captioner over transformers' BLIP, on a tiny random BLIP made here and saved as a user would."""

import pytest
import torch
from PIL import Image

from segakit.core.errors import UserError
from segakit.editing.captioner import Captioner

WORDS = ["a", "photo", "of", "woman", "man", "with", "glasses", "hat", "smiling", "face"]


def _tiny_blip(folder):
    from transformers import (
        BertTokenizerFast,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    folder.mkdir(parents=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", *WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(str(folder / "vocab.txt"), bos_token="[DEC]")
    processor = BlipProcessor(BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer)
    config = BlipConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2,
                         max_position_embeddings=64, bos_token_id=5, pad_token_id=0, sep_token_id=3, eos_token_id=3),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8),
        projection_dim=16,
    )  # fmt: skip
    torch.manual_seed(0)
    BlipForConditionalGeneration(config).save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    return folder


def test_a_local_blip_captions_deterministically(tmp_path):
    captioner = Captioner.from_pretrained(_tiny_blip(tmp_path / "blip"), max_new_tokens=6)
    image = Image.new("RGB", (64, 48), (200, 120, 40))
    first, second = captioner(image), captioner(image.convert("RGBA"))
    assert isinstance(first, str) and first == second
    assert set(first.split()) <= set(WORDS) | {"[UNK]"}  # words of its vocabulary, special tokens dropped


def test_missing_or_pickled_captioner_folders_are_refused(tmp_path):
    with pytest.raises(UserError, match="Captioner folder .* does not exist"):
        Captioner.from_pretrained(tmp_path / "nope")
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(UserError, match="pickle checkpoint"):
        Captioner.from_pretrained(tmp_path / "pickled")
