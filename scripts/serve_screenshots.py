"""Screenshots of the web app's two tabs for docs/serving.md, taken by the browser test.

    python scripts/serve_screenshots.py [--out docs/img]

Runs tests/test_serve_browser.py with SEGAKIT_SCREENSHOTS set; writes serve-generate.png and serve-edit.png.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args()
    env = {**os.environ, "SEGAKIT_SCREENSHOTS": str(args.out.resolve()), "HF_HUB_OFFLINE": "1", "CI": "1"}
    code = subprocess.call(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_serve_browser.py"],
        cwd=ROOT,
        env=env,
    )
    if code == 0:
        print("\n".join(str(args.out / n) for n in ("serve-generate.png", "serve-edit.png")))
    return code


if __name__ == "__main__":
    sys.exit(main())
