"""Will a generation fit? Memory and disk estimated from a model folder's configs, before anything loads.

The estimate is deliberately simple and errs high (docs/guide.md, "Memory"): the weight files' sizes, plus
for each image in a chunk the U-Net's activations (about 28 feature maps of the first block's width at latent
size, per U-Net row: one for the unconditional branch, one for the prompt, one per edit) and the autoencoder
decoder's (about 8 maps of its widest full-resolution block), plus what the whole run holds per image
(recorded guidance: one latent per step). Attention scores are not counted: torch's
``scaled_dot_product_attention`` does not hold the (tokens x tokens) matrix. Measured against it with
``python benchmarks/memory_estimate.py --size 512 --images 1`` (growth of ``ru_maxrss``, embedded model, CPU):
U-Net pass +225 MB (2 rows; estimate 235 MB), decode +193 MB (estimate 537 MB).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from segakit.core.errors import UserError

MAX_CHUNK = 8  # images per pipeline call; larger batches buy nothing on a CPU and hold more in memory
UNET_MAPS = 28
DECODER_MAPS = 8
PNG_BYTES_PER_PIXEL = 3  # an upper bound: PNG never stores more than the raw RGB (plus a small header)
PNG_OVERHEAD = 8192


@dataclass(frozen=True)
class MemoryNeed:
    """Bytes a generation needs: ``weights`` once, ``per_image`` for each image of a chunk, ``held_per_image`` for the run."""

    weights: int
    per_image: int
    held_per_image: int
    height: int
    width: int
    per_pixel: float  # per_image = per_pixel * pixels + per_pixel_squared * pixels**2 (the decoder's attention)
    per_pixel_squared: float

    def largest_side(self, room: int) -> int:
        """The largest square side (a multiple of 64) whose one image fits in ``room`` bytes besides the weights."""
        a, b, c = self.per_pixel_squared, self.per_pixel, -(room - self.weights)
        if c >= 0:
            return 0
        pixels = -c / b if a == 0 else (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
        return int(math.sqrt(pixels) // 64 * 64)

    def for_run(self, chunk: int, count: int) -> int:
        return self.weights + self.per_image * chunk + self.held_per_image * count


def _config(folder: Path, part: str) -> dict | None:
    try:
        return json.loads((folder / part / "config.json").read_text())
    except (OSError, ValueError):
        return None


def _weights_bytes(folder: Path, dtype_bytes: int) -> int:
    """The model's weight files (the pipeline's components only), scaled to ``dtype_bytes`` from fp16 files."""
    try:
        parts = [
            k for k, v in json.loads((folder / "model_index.json").read_text()).items() if isinstance(v, list) and v[0]
        ]
    except (OSError, ValueError):
        return 0
    total = 0
    for part in parts:
        for f in (folder / part).glob("*.safetensors") if (folder / part).is_dir() else []:
            size = f.stat().st_size
            total += size * 2 if (".fp16." in f.name and dtype_bytes == 4) else size
    return total


def estimate(folder: Path, height: int | None, width: int | None, rows_per_image: int, steps: int,
             held_steps: bool, dtype_bytes: int = 4) -> MemoryNeed | None:  # fmt: skip
    """The memory a generation on the local diffusers ``folder`` needs; None if its configs cannot be read."""
    folder = Path(folder)
    unet, vae = _config(folder, "unet"), _config(folder, "vae")
    if unet is None or vae is None:
        return None
    vae_channels = list(vae.get("block_out_channels", [128]))
    factor = 2 ** (len(vae_channels) - 1)
    height = height or int(unet.get("sample_size", 64)) * factor
    width = width or int(unet.get("sample_size", 64)) * factor
    h, w = max(1, height // factor), max(1, width // factor)
    latent_channels = int(unet.get("in_channels", 4))
    # per pixel of the image: U-Net rows at latent size (factor**2 pixels per latent), decoder maps at full size
    linear = rows_per_image * UNET_MAPS * int(unet.get("block_out_channels", [320])[0]) * dtype_bytes / factor**2
    linear += DECODER_MAPS * max(vae_channels[:2]) * dtype_bytes
    squared = 0.0  # attention scores are never held whole (scaled_dot_product_attention); kept for other backends
    pixels = height * width
    per_image = int(linear * pixels + squared * pixels**2)
    held = steps * latent_channels * h * w * 4 if held_steps else 0
    return MemoryNeed(_weights_bytes(folder, dtype_bytes), per_image, held, height, width, linear, squared)


def available_memory(device: str) -> tuple[int, str] | None:
    """Free memory on ``device`` in bytes and where the number comes from; None where it cannot be told."""
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free), f"free on {device}"
    if device != "cpu":
        return None
    found: list[tuple[int, str]] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append((int(line.split()[1]) * 1024, "MemAvailable"))
    except (OSError, ValueError, IndexError):
        pass
    try:  # a container's memory limit (cgroup v2)
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            found.append((int(limit) - used, "the container's memory limit"))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def gigabytes(n: float) -> str:
    """Bytes in words: 350 kB, 12 MB, 1.8 GB, 2.9 TB, 3e+05 TB."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:.3g} {unit}" if n < 1e3 * size or unit != "TB" else f"{n / size:.1e} TB"
    return f"{n / 1e3:.0f} kB"


def plan_chunk(need: MemoryNeed, count: int, available: tuple[int, str] | None, what: str = "-n") -> int:
    """Images per pipeline call so that the run fits in ``available``; a size or count that cannot fit is a UserError."""
    if available is None:
        return min(count, MAX_CHUNK)
    budget, source = int(available[0] * 0.9), available[1]
    one = need.for_run(1, 0)
    if one > budget:
        side = need.largest_side(budget)
        fits = f"the largest square size that fits is about {side}x{side}" if side >= 64 else "no image size fits"
        raise UserError(f"A {need.width}x{need.height} image needs about {gigabytes(one)} of memory (weights {gigabytes(need.weights)}); "
                        f"{gigabytes(available[0])} is free ({source}): {fits}.")  # fmt: skip
    if need.for_run(1, count) > budget:
        largest = (budget - one) // need.held_per_image
        raise UserError(f"{what} {count} needs about {gigabytes(need.for_run(1, count))} of memory, mostly the recorded guidance "
                        f"({gigabytes(need.held_per_image)} per image), and {gigabytes(available[0])} is free ({source}); "
                        f"the largest count that fits is {largest}.")  # fmt: skip
    room = (budget - need.for_run(0, count)) // need.per_image
    return int(max(1, min(count, MAX_CHUNK, room)))


def check_disk(folder: Path, count: int, height: int, width: int, what: str = "-n") -> None:
    """Refuse ``count`` PNGs of ``height`` x ``width`` that cannot fit on the disk holding ``folder``."""
    here = Path(folder) if str(folder) else Path(".")
    while not here.exists() and here != here.parent:
        here = here.parent
    try:
        usage = shutil.disk_usage(here)
    except OSError:
        return
    free = usage.free
    if usage.total == 0:  # a pseudo file system (/proc): writing there is refused by the output checks
        return
    each = height * width * PNG_BYTES_PER_PIXEL + PNG_OVERHEAD
    if count * each > free:
        raise UserError(f"{what} {count} images of {width}x{height} need up to {gigabytes(count * each)} on disk and "
                        f"{gigabytes(free)} is free at {str(here)!r}; the largest count that fits is {free // each}.")  # fmt: skip


def local_model_folder(resolved: str) -> Path | None:
    """The folder of a resolved model name (a local folder; a hub id only where it is in the local cache)."""
    path = Path(resolved)
    if path.is_dir():
        return path
    try:
        from huggingface_hub import try_to_load_from_cache

        index = try_to_load_from_cache(resolved, "model_index.json")
    except Exception:  # no hub library, or a name the hub rejects
        return None
    return Path(index).parent if isinstance(index, str) and os.path.isfile(index) else None
