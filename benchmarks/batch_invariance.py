"""Is a batched image bit-for-bit the image run alone, and does the thread count matter? (CPU, float32, this torch)

The batch runner's design rests on the answers (``docs/scale.md``): it runs the same batches with the same
thread count in every mode, because neither question is answered "yes, always" on this machine.

    python benchmarks/batch_invariance.py --images 8 --steps 4
"""

from __future__ import annotations

import argparse
import json
import os
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

from segakit.sega.guidance import Edit  # noqa: E402
from segakit.sega.pipeline import SegaPipeline  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args()
    pipe = SegaPipeline.from_pretrained("embedded", dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    prompts = [("a face of a man", "a face of a woman")[i % 2] for i in range(args.images)]

    def run(rows: list[int], edits=(), output_type="latent"):
        gens = [torch.Generator().manual_seed(i) for i in rows]
        return pipe([prompts[i] for i in rows], num_inference_steps=args.steps, generator=gens, edits=list(edits),
                    output_type=output_type).images  # fmt: skip

    report = {"torch": torch.__version__, "images": args.images, "steps": args.steps}
    rows = list(range(args.images))
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for name, edits in (("plain", ()), ("one edit", (Edit("glasses", warmup=1),))):
            batched = run(rows, edits)
            alone = torch.cat([run([i], edits) for i in rows])
            report[f"{name}, {threads} thread(s): batched == alone"] = bool(torch.equal(batched, alone))
            report[f"{name}, {threads} thread(s): max |batched - alone| (latents)"] = float(
                (batched - alone).abs().max()
            )
            report[f"_{name}_{threads}"] = batched
            report[f"_{name}_{threads}_alone"] = alone
            report[f"_{name}_{threads}_half"] = run(rows[: len(rows) // 2], edits)
            pixels_b, pixels_a = (
                run(rows, edits, "np"),
                torch.cat([torch.as_tensor(run([i], edits, "np")) for i in rows]),
            )
            diff = (torch.as_tensor(pixels_b) * 255).round() - (pixels_a * 255).round()
            report[f"{name}, {threads} thread(s): pixels (0-255) that differ, batched vs alone"] = int(
                (diff != 0).sum()
            )
    for name in ("plain", "one edit"):
        for suffix, what in (
            ("", f"batch of {args.images}"),
            ("_half", f"batch of {args.images // 2}"),
            ("_alone", "one image per call"),
        ):
            a, b = report.pop(f"_{name}_1{suffix}"), report.pop(f"_{name}_2{suffix}")
            report[f"{name}, {what}: 1 thread == 2 threads"] = bool(torch.equal(a, b))
            report[f"{name}, {what}: max |1 thread - 2 threads| (latents)"] = float((a - b).abs().max())
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
