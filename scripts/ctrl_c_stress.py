"""Ctrl-C at random moments of ``segakit generate``: exit status, stderr and what was left, per run.

    python scripts/ctrl_c_stress.py --runs 25 --from 0.05 --to 2.5     # start-up and generation
    python scripts/ctrl_c_stress.py --runs 30 --from 3.3 --to 4.6      # around the end (adjust to this machine)

Each run generates 2 images of 2 steps into a fresh folder and gets SIGINT after a random delay. Wanted: status
130 and the one line ``interrupted``, and either no files or only complete ones. Printed: every run that differs,
then how many ended 130. (A run killed in the last moments of Python's shutdown shows -2: the shell reports 130.)
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def one(delay: float) -> tuple[int, str, list[str]]:
    folder = Path(tempfile.mkdtemp(prefix="segakit-ctrl-c-"))
    env = {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1", "SEGAKIT_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "segakit", "generate", "a face", "--steps", "2", "-n", "2", "--out", "run"],
                            cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    left = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    shutil.rmtree(folder, ignore_errors=True)
    return proc.returncode, err, left


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=25)
    parser.add_argument("--from", dest="low", type=float, default=0.05, help="shortest delay, seconds")
    parser.add_argument("--to", dest="high", type=float, default=2.5, help="longest delay, seconds")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    ok = 0
    for _ in range(args.runs):
        delay = rng.uniform(args.low, args.high)
        code, err, left = one(delay)
        ok += code == 130
        if code != 130 or err != "interrupted\n":
            print(f"after {delay:.2f} s: status {code}, stderr {err[-80:]!r}, left {left}")
    print(f"{ok} of {args.runs} ended with 130")


if __name__ == "__main__":
    main()
