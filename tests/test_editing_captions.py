"""The caption writer's prompt and parser, its retries, and loading a local causal LM (a tiny random one)."""

import json

import pytest
import torch

from segakit.core.errors import UserError
from segakit.editing.caption_writer import (
    AFTER_MARK,
    MAX_TRIES,
    CaptionWriter,
    caption_prompt,
    check_model_folder,
    parse_captions,
)

SOURCE = "a photo of a woman with long hair"


def test_prompt_locks_the_source_caption_in_first():
    p = caption_prompt("give her glasses", 3, SOURCE)
    assert p.startswith("Instruct: Given the transformation 'give her glasses', generate three (3) image captions")
    assert p.endswith(f"Before transformation:\nCaption 1: {SOURCE}\n")


WELL_FORMED = caption_prompt("give her glasses", 2, SOURCE) + (
    "Caption 2: a woman with long hair\n\nAfter transformation:\nCaption 1: a photo of a woman with long hair and glasses\n"
    "Caption 2: a woman with long hair wearing glasses\n"
)


def test_parser_on_well_formed_output():
    before, after = parse_captions(WELL_FORMED)
    assert before == [SOURCE, "a woman with long hair"]
    assert after == ["a photo of a woman with long hair and glasses", "a woman with long hair wearing glasses"]


@pytest.mark.parametrize(
    "text",
    [
        "",  # empty
        caption_prompt("give her glasses", 2, SOURCE),  # the model wrote nothing
        caption_prompt("x", 2, SOURCE) + "Caption 2: b\n",  # no After marker
        caption_prompt("x", 2, SOURCE) + f"{AFTER_MARK}\nsome words\nCaption:\n",  # no caption after the marker
        "After transformation:\nCaption 1: only after",  # nothing before
        "lorem ipsum dolor sit amet",
    ],
    ids=["empty", "nothing-written", "no-after-marker", "empty-after", "nothing-before", "noise"],
)
def test_parser_on_malformed_output(text):
    assert parse_captions(text) is None


def test_parser_stops_at_a_new_example_and_ignores_other_lines():
    text = WELL_FORMED + "Instruct: Given the transformation 'x'...\nBefore transformation:\nCaption 1: spill\n"
    before, after = parse_captions(text)
    assert "spill" not in after and len(after) == 2 and len(before) == 2


class _Scripted:
    """A stand-in for a language model's text generation: the outputs of successive tries, in order."""

    def __init__(self, outputs):
        self.outputs, self.seeds, self.temperatures = list(outputs), [], []

    def __call__(self, prompt, seed, temperature=None):
        self.seeds.append(seed)
        self.temperatures.append(temperature)
        return prompt + self.outputs.pop(0)


def _writer(outputs, temperature=1.0):
    w = CaptionWriter.__new__(CaptionWriter)
    w.generate, w.temperature = _Scripted(outputs), temperature
    return w


def test_a_writer_below_temperature_one_samples_each_retry_a_little_hotter():
    good = "Caption 2: a woman\nAfter transformation:\nCaption 1: a woman with glasses\nCaption 2: glasses on a woman\n"
    w = _writer(["garbage"] * 9 + [good], temperature=0.4)
    assert w.write("give her glasses", SOURCE, n=2, seed=0).complete
    assert w.generate.temperatures[0] == 0.4 and w.generate.temperatures[-1] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(w.generate.temperatures, w.generate.temperatures[1:]))
    hot = _writer(["garbage", good], temperature=1.3)
    hot.write("give her glasses", SOURCE, n=2, seed=0)
    assert hot.generate.temperatures == [1.3, 1.3]  # at 1 or above it stays


def test_writer_retries_until_it_parses_with_a_new_seed_each_try():
    good = "Caption 2: a woman\nAfter transformation:\nCaption 1: a woman with glasses\nCaption 2: glasses on a woman\n"
    w = _writer(["garbage", "Caption 2: x\n", good])
    out = w.write("give her glasses", SOURCE, n=2, seed=5)
    assert (out.before, out.after, out.tries, out.complete) == (
        [SOURCE, "a woman"],
        ["a woman with glasses", "glasses on a woman"],
        3,
        True,
    )
    assert w.generate.seeds == [5, 6, 7]


def test_after_captions_that_copy_a_before_caption_are_dropped_and_an_all_copy_try_is_retried():
    copies = f"Caption 2: a woman\nAfter transformation:\nCaption 1: {SOURCE.upper()}\nCaption 2: a woman\n"
    good = "Caption 2: a woman\nAfter transformation:\nCaption 1: a woman with glasses\nCaption 2: a woman\n"
    w = _writer([copies, good])
    out = w.write("give her glasses", SOURCE, n=1, seed=0)
    assert (out.before, out.after, out.tries) == (
        [SOURCE],
        ["a woman with glasses"],
        2,
    )  # the copy "a woman" is gone too
    w = _writer([copies] * MAX_TRIES)
    with pytest.raises(UserError, match="state a change"):
        w.write("give her glasses", SOURCE, n=1)


def test_writer_falls_back_to_a_partial_parse_then_refuses_in_one_sentence():
    partial = "After transformation:\nCaption 1: a woman with glasses\n"
    w = _writer([partial] + ["nothing"] * (MAX_TRIES - 1))
    out = w.write("give her glasses", SOURCE, n=3)
    assert (out.before, out.after, out.complete) == ([SOURCE], ["a woman with glasses"], False)
    w = _writer(["nothing"] * MAX_TRIES)
    with pytest.raises(UserError, match="no parseable captions .* in 10 tries"):
        w.write("give her glasses", SOURCE, n=3)
    with pytest.raises(UserError, match="instruction is empty"):
        _writer([]).write("  ", SOURCE)


def _tiny_lm(folder):
    """A random 2-layer GPT-2 with a byte-level tokenizer, saved as a user would (safetensors)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    n = bpe.get_vocab_size()
    bpe.add_special_tokens(["<|endoftext|>"])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(vocab_size=n + 1, n_positions=1024, n_embd=32, n_layer=2, n_head=2, eos_token_id=n, bos_token_id=n)
    )
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def test_a_random_local_lm_is_deterministic_and_its_unparseable_output_is_refused(tmp_path):
    writer = CaptionWriter.from_pretrained(_tiny_lm(tmp_path / "lm"), max_new_tokens=12)
    prompt = caption_prompt("give her glasses", 1, SOURCE)
    a, b, c = writer.generate(prompt, 0), writer.generate(prompt, 0), writer.generate(prompt, 1)
    assert a == b and a != c and a.startswith(prompt)
    with pytest.raises(UserError, match="no parseable captions"):
        writer.write("give her glasses", SOURCE, n=1)


def test_the_sampling_temperature_comes_from_the_folder_unless_given_and_must_be_positive(tmp_path):
    from transformers import GenerationConfig

    folder = _tiny_lm(tmp_path / "lm")
    assert CaptionWriter.from_pretrained(folder).temperature == 1.0  # the folder sets none
    GenerationConfig(do_sample=True, temperature=0.4).save_pretrained(folder)
    writer = CaptionWriter.from_pretrained(folder, max_new_tokens=40)
    assert writer.temperature == 0.4 and CaptionWriter.from_pretrained(folder, temperature=1.5).temperature == 1.5
    prompt = caption_prompt("give her glasses", 1, SOURCE)
    hot = CaptionWriter.from_pretrained(folder, temperature=1.0, max_new_tokens=40)
    assert writer.generate(prompt, 0) == writer.generate(prompt, 0) != hot.generate(prompt, 0)  # it is used
    for bad in (0, -1.0):
        with pytest.raises(UserError, match="temperature .* not positive"):
            CaptionWriter.from_pretrained(folder, temperature=bad)


def test_missing_or_pickled_model_folders_are_refused(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        check_model_folder(tmp_path / "nope")
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (tmp_path / "pickled" / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(UserError, match="pickle checkpoint"):
        CaptionWriter.from_pretrained(tmp_path / "pickled")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no .safetensors"):
        check_model_folder(tmp_path / "empty")
