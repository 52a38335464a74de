"""Recipe: encode the U-Net's training set once -- autoencoder latents and text-encoder hidden states.

The U-Net then trains on this cache and never runs the autoencoder or the text tower. Each shard is
one safetensors file::

    shard-00000.safetensors   latents (S, 4, 16, 16) float16, already multiplied by the VAE's scaling_factor
                              hidden  (S, L, D) float16: the text tower's last hidden state of the caption,
                                      padded to the tokenizer's model_max_length exactly as a pipeline does
                              input_ids (S, L) int32
    shard-00000.jsonl         caption and attribute labels of each row
    empty.safetensors         hidden (1, L, D): the empty prompt "" (classifier-free guidance's unconditional)
    DONE.json                 written last: counts, sources, seconds

Shards are written one at a time, so an interrupted run resumes at the first missing shard.
:func:`open_tensor` memory-maps one tensor of a shard (rows are read on demand).

    python -m segakit.train.cache                 # the real run (resumes)
    python -m segakit.train.cache --n 32 --shard_size 16 --out /tmp/cache --vae ... --text_encoder ... --tokenizer ...
"""

from __future__ import annotations

import json
import multiprocessing
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file
from transformers import CLIPTextModel, CLIPTokenizer

from segakit.train.config import config_dict, parse_config, runs_root, setup_torch, text_encoder_path
from segakit.train.data import TRAIN_SEED, batch_at


@dataclass
class CacheConfig:
    out: str = ""  # default: $SEGAKIT_RUNS/cache
    vae: str = ""  # default: $SEGAKIT_RUNS/autoencoder/final
    text_encoder: str = (
        ""  # default: $SEGAKIT_RUNS/text_encoder/model/text_encoder if that stage finished, else clip/text_encoder
    )
    tokenizer: str = ""  # default: $SEGAKIT_RUNS/tokenizer
    device: str = "cpu"
    threads: int = 0
    seed: int = TRAIN_SEED
    start: int = 0  # first world index
    n: int = 100_000
    shard_size: int = 10_000
    batch_size: int = 250
    workers: int = 0  # processes rendering the world in parallel (0 = render in this process)


@dataclass
class Sources:
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer


def load_sources(cfg: CacheConfig, device: torch.device) -> Sources:
    root = runs_root()
    vae = (
        AutoencoderKL.from_pretrained(cfg.vae or root / "autoencoder" / "final", torch_dtype=torch.float32)
        .to(device)
        .eval()
    )
    text = (
        CLIPTextModel.from_pretrained(cfg.text_encoder or text_encoder_path(root), torch_dtype=torch.float32)
        .to(device)
        .eval()
    )
    tok = CLIPTokenizer.from_pretrained(cfg.tokenizer or root / "tokenizer")
    return Sources(vae, text, tok)


@torch.no_grad()
def encode_text(src: Sources, captions: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and last hidden states, padded to ``model_max_length`` as StableDiffusionPipeline does."""
    ids = src.tokenizer(
        captions, padding="max_length", max_length=src.tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    hidden = src.text_encoder(ids.to(device))[0]
    return ids, hidden


@torch.no_grad()
def encode_images(src: Sources, images: torch.Tensor) -> torch.Tensor:
    return src.vae.encode(images).latent_dist.mode() * src.vae.config.scaling_factor


def _render(job: tuple[int, int, int]):
    return batch_at(*job)


def write_shard(cfg: CacheConfig, src: Sources, index: int, out: Path, device: torch.device, pool=None) -> None:
    first = cfg.start + index * cfg.shard_size
    count = min(cfg.shard_size, cfg.n - index * cfg.shard_size)
    latents, hiddens, ids_all, records = [], [], [], []
    jobs = [(cfg.seed, first + b, min(cfg.batch_size, count - b)) for b in range(0, count, cfg.batch_size)]
    for batch in pool.imap(_render, jobs) if pool is not None else map(_render, jobs):  # same order either way
        latents.append(encode_images(src, batch.images.to(device)).half().cpu())
        ids, hidden = encode_text(src, batch.captions, device)
        hiddens.append(hidden.half().cpu())
        ids_all.append(ids.to(torch.int32))
        records += [{"caption": c, **lab} for c, lab in zip(batch.captions, batch.labels)]
    name = f"shard-{index:05d}"
    tensors = {"latents": torch.cat(latents), "hidden": torch.cat(hiddens), "input_ids": torch.cat(ids_all)}
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    meta = {
        "seed": str(cfg.seed),
        "start": str(first),
        "count": str(count),
        "scaling_factor": str(src.vae.config.scaling_factor),
    }
    with open(out / f"{name}.jsonl.tmp", "w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records)
    save_file(tensors, out / f"{name}.safetensors.tmp", metadata=meta)
    os.replace(out / f"{name}.jsonl.tmp", out / f"{name}.jsonl")
    os.replace(out / f"{name}.safetensors.tmp", out / f"{name}.safetensors")


def build(cfg: CacheConfig) -> Path:
    device = setup_torch(cfg.device, cfg.threads)
    out = Path(cfg.out) if cfg.out else runs_root() / "cache"
    out.mkdir(parents=True, exist_ok=True)
    if (out / "DONE.json").is_file():
        print(f"cache: complete -> {out}", flush=True)
        return out
    src = load_sources(cfg, device)
    _, empty = encode_text(src, [""], device)
    save_file({"hidden": empty.half().cpu().contiguous()}, out / "empty.safetensors")
    n_shards = (cfg.n + cfg.shard_size - 1) // cfg.shard_size
    t0 = time.time()
    done_before = sum((out / f"shard-{i:05d}.safetensors").is_file() for i in range(n_shards))
    print(f"cache: {cfg.n} samples in {n_shards} shards, {done_before} already written -> {out}", flush=True)
    pool = multiprocessing.get_context("spawn").Pool(cfg.workers) if cfg.workers > 0 else None
    try:
        for i in range(n_shards):
            if (out / f"shard-{i:05d}.safetensors").is_file():
                continue
            ts = time.time()
            write_shard(cfg, src, i, out, device, pool)
            dt = time.time() - ts
            count = min(cfg.shard_size, cfg.n - i * cfg.shard_size)
            print(f"shard {i + 1}/{n_shards}: {count} samples in {dt:.1f} s ({count / dt:.1f} samples/s)", flush=True)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    done = {"n": cfg.n, "shards": n_shards, "seconds_this_run": round(time.time() - t0, 1), "config": config_dict(cfg)}
    (out / "DONE.json").write_text(json.dumps(done, indent=1))
    print(f"cache done in {done['seconds_this_run']} s -> {out}", flush=True)
    return out


# ---------------------------------------------------------------------------------------------- reading

_DTYPES = {"F16": np.float16, "F32": np.float32, "I32": np.int32, "I64": np.int64, "BF16": None}


def open_tensor(path: Path, name: str) -> np.ndarray:
    """Memory-map tensor ``name`` of a safetensors file (read-only; rows load when indexed)."""
    with open(path, "rb") as fh:
        (header_len,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(header_len))
    info = header[name]
    dtype = _DTYPES[info["dtype"]]
    begin, _ = info["data_offsets"]
    return np.memmap(path, dtype=dtype, mode="r", offset=8 + header_len + begin, shape=tuple(info["shape"]))


@dataclass
class Cache:
    """All shards of a cache, as memory-mapped arrays; ``rows(idx)`` gathers a batch."""

    latents: list[np.ndarray]
    hidden: list[np.ndarray]
    empty: torch.Tensor  # (1, L, D)
    offsets: np.ndarray  # first global row of each shard
    folder: Path | None = None  # where the shards' jsonl records are (read by ``labels``)
    _records: list[dict] | None = None

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def labels(self, idx: torch.Tensor) -> list[dict]:
        """The caption and attribute labels of rows ``idx`` (every shard's jsonl, read on first use)."""
        if self._records is None:
            self._records = read_records(self.folder)
        return [self._records[int(i)] for i in idx]

    def rows(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = idx.numpy()
        shard = np.searchsorted(self.offsets, idx, side="right") - 1
        local = idx - self.offsets[shard]
        lat = np.stack([self.latents[s][i] for s, i in zip(shard, local)])
        hid = np.stack([self.hidden[s][i] for s, i in zip(shard, local)])
        return torch.from_numpy(lat).float(), torch.from_numpy(hid).float()

    def preload(self, device: torch.device) -> LoadedCache:
        """Every row read into memory on ``device`` (float16), for fast random batches on a GPU."""
        lat = torch.cat([torch.from_numpy(np.ascontiguousarray(x)) for x in self.latents]).to(device)
        hid = torch.cat([torch.from_numpy(np.ascontiguousarray(x)) for x in self.hidden]).to(device)
        return LoadedCache(lat, hid, self.empty, self)


@dataclass
class LoadedCache:
    """A :class:`Cache` held in (GPU) memory; ``rows`` returns float32 tensors on its device."""

    latents: torch.Tensor
    hidden: torch.Tensor
    empty: torch.Tensor
    source: Cache | None = None

    def __len__(self) -> int:
        return len(self.latents)

    def labels(self, idx: torch.Tensor) -> list[dict]:
        return self.source.labels(idx.cpu())

    def rows(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = idx.to(self.latents.device)
        return self.latents[idx].float(), self.hidden[idx].float()


def read_records(folder: Path) -> list[dict]:
    """Every row's caption and labels, in row order (the shards' jsonl files)."""
    rows: list[dict] = []
    for path in sorted(Path(folder).glob("shard-*.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


def open_cache(folder: Path) -> Cache:
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / "DONE.json").is_file():
        raise SystemExit(f"the cache at {folder} is incomplete; run python -m segakit.train.cache first.")
    paths = sorted(folder.glob("shard-*.safetensors"))
    latents = [open_tensor(p, "latents") for p in paths]
    hidden = [open_tensor(p, "hidden") for p in paths]
    offsets = np.cumsum([0] + [len(x) for x in latents])
    return Cache(latents, hidden, load_file(folder / "empty.safetensors")["hidden"].float(), offsets, folder)


def main(argv: list[str] | None = None) -> None:
    build(parse_config(CacheConfig, argv))


if __name__ == "__main__":
    main()
