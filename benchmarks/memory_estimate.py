"""segakit's memory estimate (segakit.core.memory) against what a generation on the embedded model really takes.

Grows ``ru_maxrss`` (peak resident memory) around one U-Net pass and one decode at a given size, and prints the
estimate's parts beside it. Run one size per process (the peak only grows):

    python benchmarks/memory_estimate.py --size 512 --images 1
    python benchmarks/memory_estimate.py --size 512 --images 2
"""

from __future__ import annotations

import argparse
import os
import resource
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

from segakit import Edit, SegaPipeline  # noqa: E402
from segakit.core.loading import embedded_path  # noqa: E402
from segakit.core.memory import DECODER_MAPS, UNET_MAPS, estimate, gigabytes  # noqa: E402


def peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--images", type=int, default=1)
    ap.add_argument("--edits", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    pipe = SegaPipeline.from_pretrained("embedded")
    pipe.set_progress_bar_config(disable=True)
    s, n = args.size, args.images
    before = peak()
    latents = pipe(["a face"], height=s, width=s, num_inference_steps=2, num_images_per_prompt=n,
                   edits=[Edit("glasses", warmup=0)] * args.edits, output_type="latent").images  # fmt: skip
    after_unet = peak()
    with torch.no_grad():
        pipe.vae.decode(latents / pipe.vae.config.scaling_factor)
    after_decode = peak()
    rows = 2 + args.edits
    unet_only = estimate(embedded_path(), s, s, rows, 2, False)
    print(f"{s}x{s}, {n} image(s), {args.edits} edit(s) ({rows} U-Net rows per image); estimate constants: "
          f"{UNET_MAPS} U-Net maps per row, {DECODER_MAPS} decoder maps")  # fmt: skip
    print(f"  measured: U-Net pass +{gigabytes(after_unet - before)}, decode +{gigabytes(after_decode - after_unet)}")
    print(f"  estimate for the whole chunk (U-Net rows + decode): {gigabytes(unet_only.per_image * n)}")


if __name__ == "__main__":
    main()
