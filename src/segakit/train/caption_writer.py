"""Recipe: the embedded model's caption writer -- a small GPT-2 (stock ``GPT2LMHeadModel``) that continues the
paper's template with N captions before and N after an instruction (issue 17).

Training texts are exactly what :class:`segakit.editing.CaptionWriter` feeds and parses: ``caption_prompt``
(the template with the instruction, N, and the image's caption locked in as ``Caption 1``), then ``Caption 2..N``
of the face before, ``After transformation:``, ``Caption 1..N`` after, and the end-of-text token. The caption sets
come from the faces world (``segakit.world.edit_captions``: an edit pair's instruction, before/after captions that
differ exactly by the change); N is drawn from 1..5. The loss is on the continuation only (the prompt is given).

The tokenizer is word-level (``tokenizers.Tokenizer``, a ``WordLevel`` model over every word, punctuation mark and
line break of the training texts, each word carrying its leading space byte-level style, so decoding gives the text
back exactly), wrapped as ``PreTrainedTokenizerFast``: the folder loads with ``AutoTokenizer`` and
``AutoModelForCausalLM``. A word it never saw is ``<unk>``.

    # the shipped writer: 5,000 steps, then the same run folder continued to 10,000 and to 20,000 (on each resume the
    # cosine schedule is recomputed for the new --max_steps: the learning rate rose to 8e-4 at steps 5,000 and
    # 10,000, and decayed again, to 1.5e-4 at 20,000; about 36 s per 50 steps on one thread)
    python -m segakit.train.caption_writer --threads 1 --run /work/runs-edit/writer --max_steps 5000
    python -m segakit.train.caption_writer --threads 1 --run /work/runs-edit/writer --max_steps 10000
    python -m segakit.train.caption_writer --threads 1 --run /work/runs-edit/writer --max_steps 20000 \\
        --export src/segakit/assets/caption_writer --overwrite true
    python -m segakit.train.caption_writer --max_steps 2 --batch_size 2 --run /tmp/cw --eval_n 0   # smoke

Writes ``<run>/ckpt`` (resumable), ``<run>/model`` (refreshed at each checkpoint) and ``<run>/metrics.jsonl``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from segakit.editing.caption_writer import AFTER_MARK, caption_prompt
from segakit.train.checkpoint import check_export, copy_dir, load_checkpoint, save_checkpoint, save_pretrained_dir
from segakit.train.config import config_dict, lr_at, parse_config, setup_torch
from segakit.world.edit_captions import WRITER_STREAM, edit_captions_at

UNK, PAD, EOS = "<unk>", "<pad>", "<|endoftext|>"
# a word with its leading space (hyphens and apostrophes inside it), a punctuation mark (with its space), a line break
SPLIT = r" ?\w+(?:['-]\w+)*| ?[^\w\s]|\n"
N_WEIGHTS = (0.1, 0.2, 0.4, 0.2, 0.1)  # how often a text has 1..5 captions per side


@dataclass
class WriterConfig:
    run: str = "runs/caption_writer"
    export: str = ""  # also copy the final folder here (e.g. src/segakit/assets/caption_writer)
    overwrite: bool = False  # --overwrite true: replace an existing --export (the output policy: never unasked)
    device: str = "cpu"
    threads: int = 1
    seed: int = 0  # the world seed of the training texts (their own random stream; evaluation reads another)
    vocab_texts: int = 20000  # training texts read to collect the vocabulary
    p_capital: float = 0.15  # share of instructions starting with a capital letter
    # model (GPT2Config)
    n_embd: int = 128
    n_layer: int = 4
    n_head: int = 4
    n_positions: int = 512
    temperature: float = 0.4  # the sampling temperature written into the folder's generation_config.json
    # optimisation
    batch_size: int = 16
    max_steps: int = 600
    lr: float = 1.5e-3
    warmup: int = 100
    schedule: str = "cosine"
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    # bookkeeping
    max_minutes: float = 0.0  # stop (checkpoint and export) after this much wall time in this run; 0 = no limit
    log_every: int = 50
    ckpt_every: int = 50
    eval_n: int = 0  # held-out edits written at the end (0: none; python -m segakit.eval.caption_writer measures)


# ----------------------------------------------------------------------------------------------- data
def text_at(seed: int, index: int, p_capital: float = 0.15) -> tuple[str, str]:
    """(prompt, continuation) of training text ``index``: what the writer is given, and what it should write."""
    rng = np.random.default_rng([seed, index, WRITER_STREAM, 1])
    n = int(rng.choice(len(N_WEIGHTS), p=N_WEIGHTS)) + 1
    ec = edit_captions_at(seed, index, n)
    instruction = ec.instruction[:1].upper() + ec.instruction[1:] if rng.random() < p_capital else ec.instruction
    prompt = caption_prompt(instruction, n, ec.before[0])
    lines = [f"Caption {k}: {c}\n" for k, c in enumerate(ec.before[1:], 2)] + [AFTER_MARK + "\n"]
    lines += [f"Caption {k}: {c}\n" for k, c in enumerate(ec.after, 1)]
    return prompt, "".join(lines)


def pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(SPLIT), behavior="isolated"),
                                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])  # fmt: skip


def build_tokenizer(cfg: WriterConfig) -> PreTrainedTokenizerFast:
    """Word-level vocabulary of the training texts (and the template for every N up to 10), in first-seen order."""
    pre = pre_tokenizer()
    words: dict[str, None] = dict.fromkeys([UNK, PAD, EOS])
    texts = [
        caption_prompt("x", n, "x") + AFTER_MARK + "\n" + "".join(f"Caption {k}: x\n" for k in range(1, 11))
        for n in range(1, 11)
    ]
    for i in range(cfg.vocab_texts):
        prompt, rest = text_at(cfg.seed, i, cfg.p_capital)
        texts.append(prompt + rest)
    for text in texts:
        words.update(dict.fromkeys(p for p, _ in pre.pre_tokenize_str(text)))
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=UNK))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token=UNK, pad_token=PAD, eos_token=EOS, bos_token=EOS,
                                   model_max_length=cfg.n_positions)  # fmt: skip


def build_model(cfg: WriterConfig, tokenizer: PreTrainedTokenizerFast) -> GPT2LMHeadModel:
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=cfg.n_positions, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
                        n_head=cfg.n_head, bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    model = GPT2LMHeadModel(config)
    # how CaptionWriter samples by default (transformers' convention: the folder's generation_config.json);
    # python -m segakit.eval.caption_writer --temperature T measures other values
    model.generation_config.do_sample, model.generation_config.temperature = True, cfg.temperature
    return model


def batch_at(cfg: WriterConfig, tokenizer, start: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Token ids, attention mask and labels (-100 on the prompt and the padding) of texts ``start..``."""
    rows, targets = [], []
    for i in range(start, start + cfg.batch_size):
        prompt, rest = text_at(cfg.seed, i, cfg.p_capital)
        p = tokenizer(prompt, add_special_tokens=False).input_ids
        r = tokenizer(rest, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
        ids = (p + r)[: cfg.n_positions]
        rows.append(ids)
        targets.append(([-100] * len(p) + r)[: cfg.n_positions])
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for k, (row, target) in enumerate(zip(rows, targets)):
        ids[k, : len(row)], labels[k, : len(row)], mask[k, : len(row)] = torch.tensor(row), torch.tensor(target), 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


# ------------------------------------------------------------------------------------------- training
def export(model: GPT2LMHeadModel, tokenizer: PreTrainedTokenizerFast, folder: Path, info: dict) -> None:
    """The loadable folder (safetensors, tokenizer, training.json), written whole or not at all."""
    save_pretrained_dir(folder, info, model, tokenizer)


def train(cfg: WriterConfig) -> Path:
    check_export(cfg.export, cfg.overwrite)
    device = setup_torch(cfg.device, cfg.threads)
    run = Path(cfg.run)
    run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    if (run / "tokenizer" / "tokenizer.json").is_file():  # a resumed run keeps its vocabulary (and skips rebuilding it)
        tokenizer = PreTrainedTokenizerFast.from_pretrained(run / "tokenizer")
    else:
        tokenizer = build_tokenizer(cfg)
        tokenizer.save_pretrained(run / "tokenizer")
    model = build_model(cfg, tokenizer).to(device)
    decayed = {n: p.ndim >= 2 and ".wte" not in n and ".wpe" not in n for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([{"params": [p for n, p in model.named_parameters() if decayed[n] == d], "weight_decay": cfg.weight_decay if d else 0.0}
                             for d in (True, False)], lr=cfg.lr)  # fmt: skip
    state = load_checkpoint(run / "ckpt", model, opt)
    step = state["step"] if state else 0
    n_params = sum(p.numel() for p in model.parameters())
    print(f"caption_writer: GPT-2 {n_params / 1e6:.2f}M params, vocabulary {len(tokenizer)}, "
          f"{'resuming at step ' + str(step) if state else 'step 0'} -> {run}", flush=True)  # fmt: skip
    metrics = open(run / "metrics.jsonl", "a")
    info = lambda: {"recipe": "python -m segakit.train.caption_writer", "step": step, "max_steps": cfg.max_steps,
                    "params": n_params, "config": config_dict(cfg)}  # fmt: skip
    deadline = time.time() + cfg.max_minutes * 60 if cfg.max_minutes > 0 else float("inf")
    t_last, seen = time.time(), 0
    model.train()
    while step < cfg.max_steps:
        lr = lr_at(step, cfg.lr, cfg.warmup, cfg.max_steps, cfg.schedule)
        for g in opt.param_groups:
            g["lr"] = lr
        loss = model(**batch_at(cfg, tokenizer, step * cfg.batch_size, device)).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        seen += cfg.batch_size
        stop = time.time() > deadline
        if step % cfg.log_every == 0 or step == cfg.max_steps or stop:
            dt = time.time() - t_last
            print(
                f"step {step}/{cfg.max_steps} loss {loss.item():.4f} lr {lr:.2e} | {seen / dt:.1f} texts/s", flush=True
            )
            metrics.write(
                json.dumps({"step": step, "loss": loss.item(), "lr": lr, "texts_per_s": seen / dt, "time": time.time()})
                + "\n"
            )
            metrics.flush()
            t_last, seen = time.time(), 0
        if step % cfg.ckpt_every == 0 or step == cfg.max_steps or stop:
            save_checkpoint(
                run / "ckpt", model=model.state_dict(), optimizer=opt, state={"step": step, "config": config_dict(cfg)}
            )
            export(model, tokenizer, run / "model", info())
        if stop:
            print(
                f"caption_writer: --max_minutes {cfg.max_minutes} reached at step {step}; run again to resume",
                flush=True,
            )
            break
    metrics.close()
    if not (run / "model").is_dir():
        export(model, tokenizer, run / "model", info())
    if cfg.eval_n:
        from segakit.eval.caption_writer import measure

        print("eval " + json.dumps(measure(run / "model", n=cfg.eval_n).summary()), flush=True)
    if cfg.export and step >= cfg.max_steps:
        print(f"exported {copy_dir(run / 'model', Path(cfg.export))}", flush=True)
    print(f"caption_writer done at step {step} -> {run / 'model'}", flush=True)
    return run / "model"


def main(argv: list[str] | None = None) -> None:
    train(parse_config(WriterConfig, argv))


if __name__ == "__main__":
    main()
