"""Fuzz the HTTP API from its own OpenAPI schema with schemathesis, on 127.0.0.1 only.

    python scripts/fuzz_api.py                      # 60 examples per operation, seed 1, schema-following requests
    python scripts/fuzz_api.py --examples 200 --seed 2 --json out/fuzz.json

Starts ``segakit serve`` on a free local port with small limits (2 steps, 1 image, 32 pixels a side, so that the
requests it accepts render in a moment), runs ``schemathesis run`` against ``/openapi.json`` with the checks
"no 5xx", "every response matches its schema" and "every status code is documented", and counts the answers
by status code from schemathesis' HAR report. What to read: ``failures`` must be 0 (schemathesis' exit code), no
5xx, and ``refused`` (4xx answers) over ``requests`` is the share of generated requests the server turned away:
with the server's limits in the schema (minimum, maximum, enum) a schema-following fuzzer sends far fewer
requests the server refuses (docs/serving.md, "The OpenAPI schema").
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

LIMITS = ["--max-steps", "2", "--max-images", "1", "--max-side", "32", "--max-queue", "8", "--max-concepts", "2"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode} before it answered")
        try:
            with urllib.request.urlopen(f"{url}/api/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("the server did not answer within two minutes")


def count_statuses(har: Path) -> tuple[collections.Counter, collections.Counter]:
    """(endpoint, status) counts, and the refusals' sentences (their first words, to group them)."""
    entries = json.loads(har.read_text())["log"]["entries"]
    counts = collections.Counter(
        (e["request"]["url"].split("?")[0].rsplit("/", 1)[-1], e["response"]["status"]) for e in entries
    )
    reasons = collections.Counter()
    for e in entries:
        if 400 <= e["response"]["status"] < 500:
            try:
                text = json.loads(e["response"].get("content", {}).get("text") or "{}").get("error", "")
            except (ValueError, AttributeError):
                text = ""
            reasons[" ".join(str(text).split()[:7])] += 1
    return counts, reasons


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=60, help="schemathesis --max-examples (per operation and phase)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--mode",
        default="positive",
        choices=("positive", "negative", "all"),
        help="schemathesis --mode: positive (default) sends only what the schema allows, so every refusal is "
        "one the schema did not announce; all adds requests that break the schema on purpose",
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the counts here")
    args = ap.parse_args()

    bin_dir = Path(sys.executable).parent
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SEGAKIT_TOKEN": ""}
    server = subprocess.Popen([sys.executable, "-m", "segakit", "serve", "--host", "127.0.0.1", "--port", str(port),
                               "--threads", "1", "--log-level", "warning", *LIMITS], env=env)  # fmt: skip
    try:
        wait_up(url, server)
        with tempfile.TemporaryDirectory() as tmp:
            har = Path(tmp) / "run.har"
            cmd = [str(bin_dir / "schemathesis"), "run", f"{url}/openapi.json", "--max-examples", str(args.examples),
                   "--seed", str(args.seed), "--checks", "not_a_server_error,response_schema_conformance,status_code_conformance",
                   "--phases", "examples,coverage,fuzzing", "--mode", args.mode, "--request-timeout", "120", "--workers", "1",
                   "--report", "har", "--report-har-path", str(har), "--no-color"]  # fmt: skip
            run = subprocess.run(
                cmd, env=env, capture_output=True, text=True, cwd=tmp
            )  # its cache stays out of the tree
            tail = "\n".join(run.stdout.splitlines()[-25:])
            counts, reasons = count_statuses(har) if har.exists() else (collections.Counter(), collections.Counter())
    finally:
        server.terminate()
        server.wait(30)
    total = sum(counts.values())
    by_status = collections.Counter()
    for (_, status), k in counts.items():
        by_status[status] += k
    refused = sum(k for s, k in by_status.items() if 400 <= s < 500)
    server_errors = sum(k for s, k in by_status.items() if s >= 500)
    summary = {
        "examples": args.examples, "seed": args.seed, "mode": args.mode, "schemathesis_exit": run.returncode, "requests": total,
        "refused_4xx": refused, "refused_share": round(refused / total, 3) if total else None, "server_errors_5xx": server_errors,
        "by_status": {str(s): k for s, k in sorted(by_status.items())},
        "by_endpoint": {f"{ep} {s}": k for (ep, s), k in sorted(counts.items())},
        "top_refusals": dict(reasons.most_common(12)),
    }  # fmt: skip
    print(tail)
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1))
    return 0 if run.returncode == 0 and server_errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
