"""Entry points of the ingester: ``plyr-index ingest`` and ``plyr-index capture``.

Parse flags, load and validate settings (a bad one is named and stops startup with exit code 2),
configure logging, call :mod:`ingest.app`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runtime.lifecycle import run_until_signalled
from runtime.logging import configure
from runtime.settings import SettingsError, load_platform


def _ingest_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="plyr-index ingest",
        description="Follow firehose upstreams (or replay a capture file) and put fm.plyr.* events on Kafka.",
    )
    p.add_argument(
        "--upstream",
        action="append",
        dest="upstreams",
        metavar="URL",
        help="firehose upstream (repeatable; default wss://bsky.network; env INGEST_UPSTREAMS)",
    )
    p.add_argument("--from-file", type=Path, metavar="FILE", help="replay a capture file (.zst allowed) and exit")
    p.add_argument("--to", choices=["kafka", "jsonl"], help="where events go (default kafka; jsonl → stdout)")
    p.add_argument(
        "--collections",
        metavar="PATTERN",
        help="NSIDs or wildcards to keep, comma-separated (default fm.plyr.*; '*' for all)",
    )
    p.add_argument("--metrics-port", type=int, metavar="PORT", help="Prometheus port (0 = off)")
    p.add_argument(
        "--resume-upstream",
        action="append",
        metavar="URL",
        help="clear the halt an upstream got from FutureCursor, then exit",
    )
    p.add_argument(
        "--live",
        action="store_true",
        help="with --resume-upstream: also drop the stored cursor and resume from the live head",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """``plyr-index ingest``."""
    args = _ingest_parser().parse_args(argv)
    from ingest.settings import load_ingest

    try:
        platform = load_platform()
        settings = load_ingest(
            upstreams=tuple(args.upstreams) if args.upstreams else None,
            from_file=args.from_file,
            to=args.to,
            collections=args.collections,
            # A file replay to stdout is a one-shot tool: no metrics port unless asked.
            metrics_port=args.metrics_port if args.metrics_port is not None else (0 if args.from_file else None),
        )
    except SettingsError as err:
        print(f"plyr-index ingest: {err}", file=sys.stderr)  # noqa: T201 - before logging exists
        return 2
    configure(platform.log_level, platform.log_format)
    from ingest import app

    if args.resume_upstream:
        run_until_signalled(app.resume_upstreams(platform, args.resume_upstream, live=args.live))
        return 0
    code = run_until_signalled(app.run(platform, settings, out=sys.stdout.buffer))
    return 0 if code is None else code


def capture_main(argv: list[str] | None = None) -> int:
    """``plyr-index capture``: record an upstream's frames byte for byte."""
    p = argparse.ArgumentParser(prog="plyr-index capture", description="Record raw firehose frames to a file.")
    p.add_argument("--upstream", required=True, metavar="URL")
    p.add_argument("--out", required=True, type=Path, metavar="FILE", help="capture file (.zst to compress)")
    p.add_argument("--limit", type=int, metavar="N", help="stop after N frames")
    p.add_argument("--seconds", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--cursor", type=int, metavar="SEQ", help="start after this seq (default: live)")
    args = p.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        p.error("--limit must be at least 1")
    if args.seconds is not None and args.seconds <= 0:
        p.error("--seconds must be positive")
    try:
        platform = load_platform()
    except SettingsError as err:
        print(f"plyr-index capture: {err}", file=sys.stderr)  # noqa: T201
        return 2
    configure(platform.log_level, platform.log_format)
    from ingest.app import capture_upstream
    from ingest.errors import UpstreamError

    try:
        run_until_signalled(
            capture_upstream(args.upstream, args.out, limit=args.limit, seconds=args.seconds, cursor=args.cursor)
        )
    except UpstreamError as err:
        print(f"plyr-index capture: {err}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
