"""The two lines a training recipe prints every ``log_every`` steps, and the same numbers in ``metrics.jsonl``."""

from __future__ import annotations

import json
import time
from typing import TextIO


def log_step(metrics: TextIO, step: int, max_steps: int, loss: float, lr: float, epoch: float, samples: int,
             steps: int, seconds: float) -> None:  # fmt: skip
    """Print the loss line and the throughput line of the last ``steps`` steps (``samples`` samples in
    ``seconds``) and append them to ``metrics``."""
    print(f"step {step}/{max_steps} loss {loss:.4f} lr {lr:.2e} epoch {epoch:.2f}", flush=True)
    print(f"  throughput {samples / seconds:.1f} samples/s, {seconds / steps:.2f} s/step", flush=True)
    metrics.write(
        json.dumps({"step": step, "loss": loss, "lr": lr, "samples_per_s": samples / seconds, "time": time.time()})
        + "\n"
    )
    metrics.flush()
