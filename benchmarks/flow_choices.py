"""The measurements behind the flow model's text-side choices (docs/embedded-model.md, "Flow model (in training)").

``text``: the text-encoder gate (``segakit.eval.text_encoder.gate``) on three readings of the shipped text encoder --
its last hidden state (what the U-Net reads), stock SD3's ``hidden_states[-2]`` of the 4-layer encoder (its 3rd
layer), and ``hidden_states[-2]`` of the SD3 slot with the identity 5th layer (the 4th layer before the final norm).

``time``: seconds per training step (forward, backward, AdamW; batch 64, one thread) of the flow transformer with
the text rows SD3's pipeline builds at its defaults (48 CLIP rows + 256 zero rows), the same computation with the
zero rows folded into one row counted 256 times (what ``train/flow.py`` does), and with no zero rows at all; and,
for scale, a step of the shipped U-Net's architecture (``train/unet.py``'s defaults, 6.9M parameters) on its 48 rows.

    python benchmarks/flow_choices.py text
    python benchmarks/flow_choices.py time --steps 5
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402
from transformers import CLIPTextModel, CLIPTokenizer  # noqa: E402

from segakit.eval.text_encoder import EMBEDDED, gate  # noqa: E402
from segakit.train.flow_model import build_transformer, use_repeated_row  # noqa: E402
from segakit.train.flow_text import T5_ROWS, sd3_text_encoder  # noqa: E402


class HiddenAt(torch.nn.Module):
    """``model(ids)[0]`` = ``hidden_states[index]``: lets the gate read any layer."""

    def __init__(self, model: torch.nn.Module, index: int) -> None:
        super().__init__()
        self.model, self.index = model, index

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.model(ids, output_hidden_states=True).hidden_states[self.index],)


def text() -> None:
    te = CLIPTextModel.from_pretrained(EMBEDDED / "text_encoder", dtype=torch.float32, use_safetensors=True).eval()
    tok = CLIPTokenizer.from_pretrained(EMBEDDED / "tokenizer")
    readings = {
        "last hidden state (U-Net)": te,
        "hidden_states[-2], 4 layers (3rd layer)": HiddenAt(te, -2),
        "hidden_states[-2], identity 5th layer (4th layer)": HiddenAt(sd3_text_encoder(te), -2),
    }
    print("| reading | gate | weakest separation | weakest prompt pair |\n|---|---|---|---|")
    for name, model in readings.items():
        r = gate(model, tok)
        sep = min(r.separation.items(), key=lambda kv: kv[1])
        pair = min(
            ((n, v) for n, v in r.pairs.items() if n not in ("man/woman", "photo/drawing")), key=lambda kv: kv[1]
        )
        print(
            f"| {name} | {'pass' if r.passed else 'FAIL: ' + ', '.join(r.failures)} | {sep[0]} {sep[1]:.3f} | {pair[0]} {pair[1]:.3f} |",
            flush=True,
        )


def step_seconds(rows: int, repeated: bool, steps: int, batch: int) -> float:
    torch.manual_seed(0)
    model = build_transformer(4, 3, 64, 512, 512)
    if repeated:
        use_repeated_row(model, T5_ROWS)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, c = torch.randn(batch, 4, 16, 16), torch.randn(batch, 48 + rows, 512)
    p, t = torch.randn(batch, 512), torch.rand(batch) * 1000
    times = []
    for _ in range(steps + 1):  # the first step warms up
        t0 = time.perf_counter()
        loss = model(x, encoder_hidden_states=c, pooled_projections=p, timestep=t).sample.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return sorted(times[1:])[len(times[1:]) // 2]


def unet_step_seconds(steps: int, batch: int) -> float:
    from segakit.train.unet import UnetConfig, build_model

    torch.manual_seed(0)
    model = build_model(UnetConfig(), 256)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, c, t = torch.randn(batch, 4, 16, 16), torch.randn(batch, 48, 256), torch.randint(0, 1000, (batch,))
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        loss = model(x, t, encoder_hidden_states=c).sample.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return sorted(times[1:])[len(times[1:]) // 2]


def timing(steps: int, batch: int) -> None:
    print(f"| text rows | s/step (median of {steps}, batch {batch}, 1 thread) |\n|---|---|")
    for label, rows, repeated in [
        (f"48 + {T5_ROWS} zero rows (stock default)", T5_ROWS, False),
        (f"48 + 1 row counted {T5_ROWS} times (same computation)", 1, True),
        ("48 (no zero rows)", 0, False),
    ]:
        print(f"| {label} | {step_seconds(rows, repeated, steps, batch):.2f} |", flush=True)
    print(f"| the U-Net (train/unet.py, 6.9M), 48 rows | {unet_step_seconds(steps, batch):.2f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["text", "time"])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(1)
    text() if args.what == "text" else timing(args.steps, args.batch)


if __name__ == "__main__":
    main()
