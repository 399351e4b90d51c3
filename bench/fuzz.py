"""Run the fuzz suite (tests/fuzz) with a larger example budget and print what each target was given.

    .venv/bin/python -m bench.fuzz --scale 20            # 20x every test's budget
    .venv/bin/python -m bench.fuzz --scale 50 -k frames  # only the frame decoder's tests
    .venv/bin/python -m bench.fuzz --no-api              # without the Postgres-backed API test

The normal suite runs the same tests at scale 1 (a bounded budget, well under a minute). Each target
is held to one rule (tests/fuzz/harness.py): a result or the module's own typed error; anything else
fails its test with the input. The table counts every call per target: results, each typed error
(with its reason), and crashes. A failed test is a crash found: pytest's output above the table
shows the input.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=10.0, help="multiplier of every test's example budget")
    parser.add_argument("-k", dest="keyword", default=None, help="pytest -k expression to pick tests")
    parser.add_argument("--no-api", action="store_true", help="skip the test that needs Postgres")
    parser.add_argument("--report", type=Path, default=None, help="also write the tally as JSON here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        report = args.report or Path(tmp) / "fuzz.json"
        env = {**os.environ, "PLYR_FUZZ_SCALE": str(args.scale), "PLYR_FUZZ_REPORT": str(report)}
        cmd = [sys.executable, "-m", "pytest", "tests/fuzz", "-q", "-p", "no:cacheprovider", "--tb=short"]
        if args.keyword:
            cmd += ["-k", args.keyword]
        if args.no_api:
            cmd += ["-m", "not integration"]
        start = time.monotonic()
        code = subprocess.call(cmd, cwd=ROOT, env=env)
        elapsed = time.monotonic() - start
        if not report.exists():
            print("no tally was written (did the session start?)", file=sys.stderr)
            return code or 1
        tally = orjson.loads(report.read_bytes())

    print(f"\nfuzz run: scale {tally['scale']:g}, {elapsed:.0f} s, {tally['failed']} failed tests (crashes found)")
    print(f"{'target':<48} {'inputs':>9} {'result':>9} {'typed error':>12} {'crash':>6}  typed errors by reason")
    total = 0
    for target, outcomes in tally["targets"].items():
        inputs = sum(outcomes.values())
        total += inputs
        ok = crash = 0
        errors: dict[str, int] = {}
        for outcome, n in outcomes.items():
            # API targets are tallied by HTTP status: 2xx/3xx a result, 4xx the XRPC error, 5xx a crash.
            status = int(outcome) if outcome.isdigit() else None
            if outcome == "ok" or (status is not None and status < 400):
                ok += n
            elif outcome == "crash" or (status is not None and status >= 500):
                crash += n
            else:
                errors[outcome] = n
        reasons = ", ".join(f"{k} {n}" for k, n in sorted(errors.items(), key=lambda kv: -kv[1])[:4])
        print(f"{target:<48} {inputs:>9,} {ok:>9,} {sum(errors.values()):>12,} {crash:>6}  {reasons}")
    print(f"{'all targets':<48} {total:>9,}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
