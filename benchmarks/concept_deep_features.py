"""Concept rows from cached deep U-Net features (DeepCache's idea applied to SEGA's concepts), against concept refresh.

DeepCache skips a U-Net's deep blocks on some steps and reuses their output. For SEGA's concept rows the same idea
would compute, between refreshes, only the U-Net's outermost blocks on the current latents and take the deep
features (where the text enters: on the embedded model only the inner blocks attend to it) from the concept's last
refresh. Both variants run here against exact SEGA on the same seeds (4 concepts, 16 images, 25 steps, warm-up 5,
refreshed at step 0, at the warm-up step and every K steps after, as ``edit_refresh=K``):

- ``reuse``: ``edit_refresh=K`` itself (the concept's direction ``ee - e0`` reused with the current ``e0``);
- ``deep``: the concept's estimate from the outer blocks on the current latents and its cached deep features;
- ``deep, as a direction``: the same for the unconditional row (its deep features cached at the refresh), and the
  concept's estimate ``e0 + (shallow_concept - shallow_unconditional)``: the cached part enters as a direction.

It prints the final latents' distance to exact SEGA (relative L2 per image, mean and worst) and the outer blocks'
share of a whole U-Net call's time (what a cached step would cost a concept row).

    python benchmarks/concept_deep_features.py --threads 1
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402

from segakit import Edit, SegaPipeline  # noqa: E402

CONCEPTS = ["glasses", "a hat", "smiling", "beard"]


def outer_blocks(unet, x: torch.Tensor, t, deep: torch.Tensor) -> torch.Tensor:
    """The U-Net's estimate from its outermost down and up blocks on ``x``, with ``deep`` (the output of the up block
    before the last) given: equal to the whole call when ``deep`` comes from the same inputs."""
    emb = unet.time_embedding(unet.get_time_embed(sample=x, timestep=t).to(x.dtype))
    h0 = unet.conv_in(x)
    r0 = unet.down_blocks[0].resnets[0](h0, emb)
    out = unet.up_blocks[-1](hidden_states=deep, temb=emb, res_hidden_states_tuple=(h0, r0))
    return unet.conv_out(unet.conv_act(unet.conv_norm_out(out)))


class CachedConcepts:
    """Replaces ``unet.forward`` during a SEGA call whose rows are [unconditional, prompt, concepts...] x ``images``:
    on refresh steps the whole U-Net runs (deep features kept), on the others the concept rows come from the outer
    blocks and the cached deep features."""

    def __init__(self, unet, images: int, refresh, as_direction: bool) -> None:
        if len(unet.down_blocks[0].resnets) != 1 or getattr(unet.down_blocks[0], "has_cross_attention", False):
            raise SystemExit("this benchmark's outer-block split is written for the embedded U-Net's layout")
        self.unet, self.n, self.refresh, self.as_direction = unet, images, refresh, as_direction
        self.whole = unet.forward
        self.step, self.deep, self.captured = 0, None, {}
        self.hook = unet.up_blocks[-2].register_forward_hook(lambda m, a, out: self.captured.__setitem__("deep", out))

    def __call__(self, sample, timestep, encoder_hidden_states=None, **kw):
        step, n = self.step, self.n
        self.step += 1
        if self.refresh(step):
            out = self.whole(sample, timestep, encoder_hidden_states=encoder_hidden_states, **kw)
            self.deep = self.captured["deep"].clone()
            return out
        base = self.whole(sample[: 2 * n], timestep, encoder_hidden_states=encoder_hidden_states[: 2 * n], **kw)
        e = base[0] if isinstance(base, tuple) else base.sample
        concepts = sample.shape[0] // n - 2
        ee = outer_blocks(self.unet, sample[2 * n :], timestep, self.deep[2 * n :])
        if self.as_direction:
            e0_outer = outer_blocks(self.unet, sample[:n], timestep, self.deep[:n]).repeat(concepts, 1, 1, 1)
            ee = e[:n].repeat(concepts, 1, 1, 1) + ee - e0_outer
        out = torch.cat([e, ee])
        return (out,) if kw.get("return_dict") is False else type(base)(sample=out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--refresh", default="2,3,4")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe = SegaPipeline.from_pretrained("embedded")
    pipe.set_progress_bar_config(disable=True)
    unet, n = pipe.unet, args.images
    edits = [Edit(c) for c in CONCEPTS]  # the model's defaults: warm-up 5
    warmup = edits[0].warmup if edits[0].warmup is not None else 5

    def run(refresh: int = 1) -> torch.Tensor:
        return pipe("a face of a person", edits=edits, edit_refresh=refresh, num_inference_steps=args.steps,
                    num_images_per_prompt=n, output_type="latent", generator=torch.Generator().manual_seed(0)).images.float()  # fmt: skip

    exact = run()

    def distance(z: torch.Tensor) -> str:
        d = (z - exact).flatten(1).norm(dim=1) / exact.flatten(1).norm(dim=1)
        return f"{d.mean().item():.3f} | {d.max().item():.3f}"

    print(f"embedded model; {n} images x {args.steps} steps; 4 concepts, warm-up {warmup}; distance to exact SEGA")
    print(
        "| K | reuse (edit_refresh=K), mean | worst | deep features, mean | worst | deep, as a direction, mean | worst |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for k in (int(x) for x in args.refresh.split(",")):
        cells = [distance(run(k))]
        for as_direction in (False, True):
            due = lambda s, k=k: s == 0 or s == warmup or (s > warmup and (s - warmup) % k == 0)  # noqa: E731
            unet.forward = cached = CachedConcepts(unet, n, due, as_direction)
            try:
                cells.append(distance(run()))
            finally:
                del unet.forward  # back to the class's forward
                cached.hook.remove()
        print(f"| {k} | " + " | ".join(cells) + " |")

    x = torch.randn(4 * n, 4, unet.config.sample_size, unet.config.sample_size)
    text = pipe.encode_texts(["a face"], "cpu").embeds.expand(4 * n, -1, -1)
    captured = {}
    hook = unet.up_blocks[-2].register_forward_hook(lambda m, a, out: captured.__setitem__("deep", out))
    whole, outer = [], []
    with torch.no_grad():
        for _ in range(5):
            start = time.perf_counter()
            unet(x, 500, encoder_hidden_states=text)
            whole.append(time.perf_counter() - start)
            start = time.perf_counter()
            outer_blocks(unet, x, torch.tensor(500), captured["deep"])
            outer.append(time.perf_counter() - start)
    hook.remove()
    print(f"outer blocks / whole U-Net call, {4 * n} rows: {min(outer) / min(whole):.3f} (fastest of 5 each)")


if __name__ == "__main__":
    main()
