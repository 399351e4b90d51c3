"""The crash suite at full size: the whole pipeline as processes, kill -9 of a random part at random
moments, then the read models and the API compared with the ground truth of the corpus.

    .venv/bin/python -m bench.chaos --kills 20                 # 3,000 fm.plyr commits, ~5,300 frames
    .venv/bin/python -m bench.chaos --kills 40 --commits 6000  # more of both
    .venv/bin/python -m bench.chaos --kills 7 --commits 300 --repos 12 --seed 3 --gap-min 0.8 --gap-max 2.5 \
        --publish-s 9                                           # the plan of tests/chaos/test_crash_suite.py

Everything it runs is its own (tests/fixtures/chaos.py): a local firehose server, the tansu broker on
S3 storage (moto), an embedded PostgreSQL on a free port, one ingester, two projectors in one group and
the API. Prints the kills survived per part, the parts that exited on their own and were started again,
the events checked, the differences found (read-model rows and API answers) and the time; exits 1 on any
difference. Bounded by ``--timeout``. The figures of docs/reliability.md "Crash suite" come from here.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path

from runtime.logging import configure
from tests.fixtures.chaos import VICTIMS, ChaosPlan, ChaosReport, run_chaos
from tests.fixtures.music_corpus import music_corpus


def _print(report: ChaosReport, workdir: Path) -> None:
    print(f"kills survived: {sum(report.kills.values())}")
    for part in VICTIMS:
        print(f"  {part:<12} {report.kills[part]:>3}")
    exits = ", ".join(f"{part} {n}" for part, n in sorted(report.exits.items())) or "none"
    print(f"parts that exited on their own and were restarted: {exits}")
    print(f"events checked: {report.events} (log messages read back: {report.log_messages})")
    print(
        f"differences found: {report.difference_count} (read models: {report.differences.count} in {report.rows}"
        f" rows; API: {len(report.api_differences)} in {report.api_checks} answers)"
    )
    if report.differences.count:
        print(f"  {report.differences.summary()}")
    for line in report.api_differences[:10]:
        print(f"  {line}")
    print(f"time: {report.seconds:.1f} s (quiescence after the last kill: {report.quiesce_seconds:.1f} s)")
    print(f"logs: {workdir}")


async def _main(args: argparse.Namespace) -> int:
    built = time.monotonic()
    corpus = music_corpus(args.commits, repos=args.repos, seed=args.seed)
    print(
        f"corpus: {args.commits} fm.plyr commits among {corpus.commits} commits, {len(corpus.frames)} frames"
        f" (built in {time.monotonic() - built:.1f} s)"
    )
    mean_gap = (args.gap_min + args.gap_max) / 2
    plan = ChaosPlan(
        kills=args.kills,
        seed=args.seed,
        gap_s=(args.gap_min, args.gap_max),
        # Publishing ends around the last kill, so the kills land while frames still arrive.
        publish_s=args.publish_s if args.publish_s is not None else args.kills * mean_gap * 0.9,
    )
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="plyr-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    async with asyncio.timeout(args.timeout):
        report = await run_chaos(corpus, plan, workdir)
    _print(report, workdir)
    return 1 if report.difference_count else 0


def main() -> int:
    """``python -m bench.chaos``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=20, help="kill -9s to send (default 20)")
    p.add_argument("--commits", type=int, default=3000, help="fm.plyr commits in the corpus (default 3000)")
    p.add_argument("--repos", type=int, default=24, help="repos writing the corpus (default 24)")
    p.add_argument("--seed", type=int, default=8, help="corpus and kill schedule seed (default 8)")
    p.add_argument("--gap-min", type=float, default=1.0, help="shortest pause between kills, s (default 1)")
    p.add_argument("--gap-max", type=float, default=4.0, help="longest pause between kills, s (default 4)")
    p.add_argument("--publish-s", type=float, default=None, help="seconds over which the frames are published")
    p.add_argument("--timeout", type=float, default=900, help="the whole run's bound, s (default 900)")
    p.add_argument("--workdir", default=None, help="logs and data (default: a fresh temporary folder)")
    args = p.parse_args()
    configure("WARNING", "console")
    # A part killed mid-send is the point here, not news: the firehose server's handler error is noise.
    logging.getLogger("websockets").setLevel(logging.CRITICAL)
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
