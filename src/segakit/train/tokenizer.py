"""Recipe: the embedded model's tokenizer -- byte-level BPE trained on the world's captions.

Same construction as OpenAI CLIP's tokenizer (lower-cased, CLIP's word split, byte-level alphabet,
``</w>`` end-of-word marker, ``<|startoftext|>`` / ``<|endoftext|>``), so ``transformers.CLIPTokenizer``
loads it from a folder and diffusers' ``StableDiffusionPipeline`` uses it unchanged. The vocabulary holds
all 256 bytes (with and without ``</w>``), so any text tokenizes without an unknown token; the merges
learned from captions make the world's words one or two tokens each.

    python -m segakit.train.tokenizer --out runs/embedded/tokenizer
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import CLIPTokenizer

from segakit.train.config import config_dict, parse_config, runs_root
from segakit.train.data import TRAIN_SEED

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
EOW = "</w>"
# CLIP's split: specials, contractions, letter runs, single digits, punctuation runs.
SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


@dataclass
class TokenizerConfig:
    out: str = ""  # default: $SEGAKIT_RUNS/tokenizer
    seed: int = TRAIN_SEED
    n_captions: int = 40000  # world captions to learn merges from
    vocab_size: int = 1024  # bytes (512 with and without </w>) + merges + 2 specials
    min_frequency: int = 3
    max_length: int = 48  # model_max_length: tokens per prompt including BOS/EOS


def bytes_to_unicode() -> list[str]:
    """The 256 printable stand-ins of byte-level BPE, indexed by byte value (GPT-2 / CLIP convention)."""
    keep = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def learn_merges(texts: Iterable[str], vocab_size: int, min_frequency: int) -> list[tuple[str, str]]:
    """BPE merges learned on ``texts`` with CLIP's normalizer and word split."""
    tok = Tokenizer(models.BPE(continuing_subword_prefix="", end_of_word_suffix=EOW))
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        end_of_word_suffix=EOW,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    merges = json.loads(tok.to_str())["model"]["merges"]
    return [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]


def build_vocab(merges: list[tuple[str, str]], vocab_size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's layout: bytes, bytes+</w>, merge results in order, then BOS and EOS (the last two ids)."""
    chars = bytes_to_unicode()
    tokens = chars + [c + EOW for c in chars]
    seen = set(tokens)
    kept: list[tuple[str, str]] = []
    for a, b in merges:
        if len(tokens) >= vocab_size - 2:
            break
        if a not in seen or b not in seen:
            continue
        kept.append((a, b))
        if a + b not in seen:
            tokens.append(a + b)
            seen.add(a + b)
    tokens += [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}, kept


def make_tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]], max_length: int) -> CLIPTokenizer:
    return CLIPTokenizer(vocab=vocab, merges=[tuple(m) for m in merges], model_max_length=max_length)


def save_tokenizer(tok: CLIPTokenizer, vocab: dict[str, int], merges: list[tuple[str, str]], folder: Path) -> None:
    """``save_pretrained`` plus ``vocab.json`` / ``merges.txt`` (what older transformers' CLIPTokenizer reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(folder)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")


def corpus(cfg: TokenizerConfig) -> list[str]:
    """World captions plus every synonym phrase of the schema (so rare phrases get merges too)."""
    from segakit.world.captions import SYNONYMS, caption
    from segakit.world.dataset import rng_for
    from segakit.world.schema import sample_face

    texts = []
    for i in range(cfg.n_captions):  # the captions of samples 0..n-1 of the seed, without rendering them
        rng = rng_for(cfg.seed, i)
        text = caption(sample_face(rng), rng)
        if text:
            texts.append(text)
    phrases = [p for values in SYNONYMS.values() for ps in values.values() for p in ps]
    return texts + phrases * 20


def train(cfg: TokenizerConfig) -> Path:
    out = Path(cfg.out) if cfg.out else runs_root() / "tokenizer"
    t0 = time.time()
    texts = corpus(cfg)
    merges = learn_merges(texts, cfg.vocab_size, cfg.min_frequency)
    vocab, merges = build_vocab(merges, cfg.vocab_size)
    tok = make_tokenizer(vocab, merges, cfg.max_length)
    lengths = [len(ids) for ids in tok(texts, truncation=False)["input_ids"]]
    longest = max(lengths)
    if longest > cfg.max_length:
        raise SystemExit(f"the longest caption has {longest} tokens > --max_length {cfg.max_length}; raise it.")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_tokenizer(tok, vocab, merges, tmp)
    stats = {
        "vocab_size": len(vocab),
        "merges": len(merges),
        "captions": len(texts),
        "tokens_per_caption_mean": round(sum(lengths) / len(lengths), 2),
        "tokens_per_caption_max": longest,
        "seconds": round(time.time() - t0, 1),
        "config": config_dict(cfg),
    }
    (tmp / "training.json").write_text(json.dumps(stats, indent=1))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    print(
        f"tokenizer: {len(vocab)} tokens, captions {stats['tokens_per_caption_mean']} tokens on average, "
        f"longest {longest} <= {cfg.max_length}; {stats['seconds']} s -> {out}",
        flush=True,
    )
    return out


def main(argv: list[str] | None = None) -> None:
    train(parse_config(TokenizerConfig, argv))


if __name__ == "__main__":
    main()
