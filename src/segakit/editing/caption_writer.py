"""The caption writer: a causal language model turns an instruction into captions of the image before and after.

Pix2Pix-OnTheFly's recipe: a prompt of the form ``Instruct: Given the transformation '<instruction>', generate
<N> image captions ...`` that ends with ``Before transformation:`` / ``Caption 1: <the image's own caption>``, so
the image's caption is locked in as the first "before" caption. The model continues the text; the lines that
start with ``Caption`` before the ``After transformation`` marker are the "before" captions, those after it the
"after" captions. Output that does not parse is generated again, up to 10 tries, each with its own seed
(``seed + try``), so the result is deterministic. An "after" caption that repeats a "before" caption (the source
caption included) states no change and is dropped, so a try whose "after" captions are all copies counts as
unparsed (segakit's rule, not the paper's: small writers copy a "without glasses" caption they should turn into
"with glasses", and the edit direction of a copy is zero). After 10 tries the best partial parse is used if it has
at least one caption on each side; otherwise :class:`UserError` says so.

Sampling uses the folder's ``generation_config.json`` temperature (transformers' convention; 1 when it sets none,
or ``temperature=``) on the first try; below 1, each retry samples a little hotter, reaching 1 on the last (a sharp
writer that keeps copying gets looser draws). The embedded writer's is 0.4, which states the change and keeps the
rest more often than sampling at 1 (docs/editing.md, ``python -m segakit.eval.caption_writer --temperature``).

Any local ``AutoModelForCausalLM`` folder with safetensors weights works (Phi-2 in the paper, a small Qwen or
Llama); a user can skip the model and pass captions directly to the editor. The embedded model's writer is a small
GPT-2 trained on faces-world edits in this template (``python -m segakit.train.caption_writer``), shipped in
``segakit/assets/caption_writer`` (:data:`EMBEDDED_CAPTION_WRITER`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from segakit.core.errors import UserError, arg
from segakit.core.loading import PICKLE_SUFFIXES, pickle_refusal, quiet_loading

MAX_TRIES = 10
EMBEDDED_CAPTION_WRITER = Path(__file__).resolve().parents[1] / "assets" / "caption_writer"
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
BEFORE_MARK = "Before transformation:"
AFTER_MARK = "After transformation:"

TEMPLATE = (
    "Instruct: Given the transformation '[TRANSFORMATION]', generate [NUMBER] image captions that describe the image "
    "before and after the transformation. Write each caption on its own line, starting with 'Caption' and its number. "
    "Keep everything the transformation does not change.\n"
    "Output:\n" + BEFORE_MARK + "\n"
)


def number_text(n: int) -> str:
    """``3`` -> ``"three (3)"`` (the paper's way of saying the count)."""
    return f"{NUMBER_WORDS[n]} ({n})" if 0 <= n < len(NUMBER_WORDS) else str(n)


def caption_prompt(instruction: str, n: int, source_caption: str | None = None) -> str:
    """The language model's prompt; with ``source_caption`` it ends in ``Caption 1: <source_caption>``."""
    text = TEMPLATE.replace("[TRANSFORMATION]", instruction.strip()).replace("[NUMBER]", number_text(n))
    if source_caption:
        text += f"Caption 1: {source_caption.strip()}\n"
    return text


_CAPTION_LINE = re.compile(r"^\s*Caption[^:]*:\s*(.*\S)\s*$")


def _caption_lines(block: str) -> list[str]:
    return [m.group(1) for line in block.splitlines() if (m := _CAPTION_LINE.match(line))]


def parse_captions(text: str) -> tuple[list[str], list[str]] | None:
    """(before, after) caption lists from the model's full text (prompt + continuation); None when either side is
    empty or the ``After transformation`` marker is missing."""
    if AFTER_MARK not in text:
        return None
    head, _, tail = text.partition(AFTER_MARK)
    before_block = head.rsplit(BEFORE_MARK, 1)[-1]
    tail = tail.split(BEFORE_MARK, 1)[0]  # a model that starts a new example: stop there
    before, after = _caption_lines(before_block), _caption_lines(tail)
    if not before or not after:
        return None
    return before, after


@dataclass
class WrittenCaptions:
    before: list[str]
    after: list[str]
    tries: int
    complete: bool  # N captions on each side (False: the best partial parse after MAX_TRIES)


# what the parsing and the choice of captions do: part of a study's cache key (2: copies of before-captions dropped)
SELECTION_RULES = 2


def choose(parsed: tuple[list[str], list[str]], n: int, source_caption: str | None) -> tuple[list[str], list[str]]:
    """Keep N per side; the source caption stays the first "before" caption; "after" captions that repeat a
    "before" caption (or the source caption) are dropped."""
    before, after = list(dict.fromkeys(parsed[0])), list(dict.fromkeys(parsed[1]))
    if source_caption:
        before = [source_caption.strip()] + [c for c in before if c != source_caption.strip()]
    said = {c.strip().lower() for c in before}
    after = [c for c in after if c.strip().lower() not in said]
    return before[:n], after[:n]


def check_model_folder(folder: str | Path, what: str = "Language model") -> Path:
    """A local model folder with safetensors weights; a missing folder or pickle-only weights are refused."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise UserError(
            f"{what} folder {str(folder)!r} does not exist; pass a local folder saved with save_pretrained."
        )
    files = [f.name for f in path.iterdir() if f.is_file()]
    if not any(f.endswith(".safetensors") for f in files):
        pickles = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
        if pickles:
            raise UserError(pickle_refusal(path / pickles[0], what))
        raise UserError(f"{what} folder {str(folder)!r} holds no .safetensors weights; segakit loads safetensors only.")
    return path


class CaptionWriter:
    """``CaptionWriter.from_pretrained(folder).write(instruction, source_caption, n=3, seed=0)``."""

    def __init__(self, model, tokenizer, max_new_tokens: int = 160, temperature: float | None = None) -> None:
        """``temperature``: of the sampling; None takes the model folder's (``generation_config.json``), else 1."""
        self.model, self.tokenizer = model.eval(), tokenizer
        if temperature is None:
            temperature = getattr(getattr(model, "generation_config", None), "temperature", None) or 1.0
        if not temperature > 0:
            raise UserError(
                f"Sampling temperature {temperature} is not positive; use a number above 0 (1 samples the model as it is)."
            )
        self.max_new_tokens, self.temperature = max_new_tokens, float(temperature)

    @classmethod
    def from_pretrained(cls, folder: str | Path, **kwargs) -> CaptionWriter:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = check_model_folder(folder)
        try:
            with quiet_loading():  # no loading bars unasked (segakit.core.loading)
                model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True, local_files_only=True)
                tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"Could not load the language model in {str(folder)!r}: {first}") from None
        return cls(model, tokenizer, **kwargs)

    def try_temperature(self, attempt: int) -> float:
        """The temperature of try ``attempt`` (0-based): the writer's own on the first, rising evenly to 1 by the
        last when it is below 1 (a sharp writer that keeps copying a before-caption gets looser draws)."""
        if self.temperature >= 1.0:
            return self.temperature
        return self.temperature + (1.0 - self.temperature) * attempt / (MAX_TRIES - 1)

    @torch.no_grad()
    def generate(self, prompt: str, seed: int, temperature: float | None = None) -> str:
        """The prompt and the model's sampled continuation (seeded: the same seed gives the same text)."""
        inputs = self.tokenizer(prompt, return_tensors="pt")
        device = next(self.model.parameters()).device
        inputs = {k: v.to(device) for k, v in inputs.items()}
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            out = self.model.generate(**inputs, do_sample=True, temperature=temperature or self.temperature, top_k=0,
                                      max_new_tokens=self.max_new_tokens, pad_token_id=pad)  # fmt: skip
        new = out[0, inputs["input_ids"].shape[1] :]
        return prompt + self.tokenizer.decode(new, skip_special_tokens=True)

    def write(self, instruction: str, source_caption: str | None = None, n: int = 3, seed: int = 0) -> WrittenCaptions:
        """N captions before and after ``instruction``; see the module docs for retries and the fallback."""
        if not instruction.strip():
            raise UserError("The instruction is empty; write what to change, e.g. 'give her glasses'.")
        if n < 1 or n > 10:
            raise UserError(f"Number of captions {n} is outside 1..10.")
        prompt = caption_prompt(instruction, n, source_caption)
        best = None
        for attempt in range(MAX_TRIES):
            parsed = parse_captions(self.generate(prompt, seed + attempt, self.try_temperature(attempt)))
            if parsed is None:
                continue
            before, after = choose(parsed, n, source_caption)
            if len(before) >= n and len(after) >= n:
                return WrittenCaptions(before, after, attempt + 1, True)
            if after and (best is None or min(len(before), len(after)) > min(len(best[0]), len(best[1]))):
                best = (before, after)
        if best is not None:
            return WrittenCaptions(best[0], best[1], MAX_TRIES, False)
        raise UserError(
            f"The language model wrote no parseable captions for {instruction!r} in {MAX_TRIES} tries "
            f"(no 'Caption' lines before and after 'After transformation:' that state a change); write them yourself: "
            f"{arg('captions_after')} 'A CAPTION OF THE EDITED IMAGE' (and {arg('captions_before')} 'A CAPTION OF THIS IMAGE'), "
            f"or try another {arg('seed')}."
        )
