"""Entry points of the ingester: ``plyr-index ingest``, ``capture``, ``backfill`` and ``resync``.

Parse flags, load and validate settings (a bad one is named and stops startup with exit code 2),
configure logging, call :mod:`ingest.app`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.lifecycle import run_until_signalled
from runtime.logging import configure
from runtime.settings import PlatformSettings, SettingsError, load_platform

if TYPE_CHECKING:
    from ingest.settings import IngestSettings


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
    from ingest.errors import TopicRetentionError

    try:
        code = run_until_signalled(app.run(platform, settings, out=sys.stdout.buffer))
    except TopicRetentionError as err:
        print(f"plyr-index ingest: {err}", file=sys.stderr)  # noqa: T201 - the operator's one line
        return 2
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


_NO_VERIFY = (
    "--no-verify: the commit signature is not checked against the DID's signing key, so these records are"
    " only as trustworthy as the file itself; the MST and every record are still checked against the"
    " commit's data root."
)


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")


def _sync_parser(command: str) -> argparse.ArgumentParser:
    if command == "backfill":
        p = argparse.ArgumentParser(
            prog="plyr-index backfill",
            description="Put the existing fm.plyr.* records of repos on the log: queue repos (found on the"
            " relay with --discover, or named with --did) for the running ingester, or process the queue"
            " here with --run; --from-car imports one repo export file offline.",
        )
        p.add_argument("--discover", action="store_true", help="list the repos holding fm.plyr.* on the relay")
        p.add_argument("--relay", metavar="URL", help="relay origin (default: the first upstream over https)")
        p.add_argument("--from-car", type=Path, metavar="FILE", help="import this repo export (needs one --did)")
        p.add_argument("--no-verify", action="store_true", help="with --from-car: skip the signature check")
        p.add_argument("--to", choices=["kafka", "jsonl"], help="with --from-car: where events go (default kafka)")
    else:
        p = argparse.ArgumentParser(
            prog="plyr-index resync",
            description="Fetch repos again from their PDS and make the index match them exactly, deletes"
            " included: queue them for the running ingester, or process the queue here with --run.",
        )
    p.add_argument("--did", action="append", default=[], metavar="DID", help="a repo (repeatable)")
    p.add_argument("--run", action="store_true", help="process the whole queue in this process until it is empty")
    p.add_argument("--max-attempts", type=int, default=3, metavar="N", help="with --run: tries per repo (default 3)")
    p.add_argument("--collections", metavar="PATTERN", help="NSIDs or wildcards to keep (default fm.plyr.*)")
    return p


def backfill_main(argv: list[str] | None = None) -> int:
    """``plyr-index backfill``."""
    return _sync_main("backfill", argv)


def resync_main(argv: list[str] | None = None) -> int:
    """``plyr-index resync``."""
    return _sync_main("resync", argv)


def _sync_main(command: str, argv: list[str] | None) -> int:
    from schemas.ids import is_did

    p = _sync_parser(command)
    args = p.parse_args(argv)
    prog = f"plyr-index {command}"
    for did in args.did:
        if not is_did(did):
            p.error(f"{did!r} is not a DID (did:plc:... or did:web:...)")
    from_car = getattr(args, "from_car", None)
    if from_car is not None:
        if len(args.did) != 1:
            p.error("--from-car needs exactly one --did: the repo the file is an export of")
        if args.discover or args.run:
            p.error("--from-car imports one file: no --discover or --run with it")
    elif getattr(args, "no_verify", False) or getattr(args, "to", None):
        p.error("--no-verify and --to go with --from-car")
    elif not (args.did or args.run or getattr(args, "discover", False)):
        p.error("nothing to do: give --did, --discover or --run")
    if args.max_attempts < 1:
        p.error("--max-attempts must be at least 1")
    from ingest.settings import load_ingest

    try:
        platform = load_platform()
        settings = load_ingest(backfill_relay=getattr(args, "relay", None), collections=args.collections)
    except SettingsError as err:
        print(f"{prog}: {err}", file=sys.stderr)  # noqa: T201 - before logging exists
        return 2
    configure(platform.log_level, platform.log_format)
    if from_car is not None:
        return _import(prog, platform, settings, from_car, args.did[0], verify=not args.no_verify, to=args.to)
    return _queue(prog, command, platform, settings, args)


def _queue(
    prog: str, command: str, platform: PlatformSettings, settings: IngestSettings, args: argparse.Namespace
) -> int:
    import asyncpg

    from ingest.errors import BrokerError, DiscoveryError, SyncBusyError
    from ingest.repo_state import SyncState
    from ingest.sync_app import queue_and_run

    state = SyncState.BACKFILLING if command == "backfill" else SyncState.RESYNCING
    discover = getattr(args, "discover", False)
    try:
        run = run_until_signalled(
            queue_and_run(
                platform,
                settings,
                state=state,
                dids=args.did,
                find=discover,
                run=args.run,
                max_attempts=args.max_attempts,
                progress=sys.stderr,
            )
        )
    except DiscoveryError as err:
        _say(f"{prog}: the relay {settings.relay_url} did not list the repos: {err}")
        return 1
    except SyncBusyError as err:
        _say(f"{prog}: {err}; the requests are queued and that process will do them")
        return 1
    except BrokerError as err:
        _say(f"{prog}: the broker at {platform.kafka_bootstrap} failed: {err}")
        return 1
    except (OSError, asyncpg.PostgresError) as err:
        _say(f"{prog}: cannot use the database (PLYR_DATABASE_URL): {err}")
        return 1
    if run is None:
        _say(f"{prog}: interrupted; what is left stays queued")
        return 130
    if run.queued:
        _say(f"queued {run.queued} repo(s) for {state.value}")
    if run.discovered is not None:
        d = run.discovered
        _say(f"discovered {d.listed} repo(s) on {settings.relay_url} ({d.queued} new, {d.pages} page(s))")
    if not run.ran:
        return 0
    _say(f"synchronized {run.done} repo(s), {run.records} record(s)")
    for did, reason in sorted(run.failed.items()):
        _say(f"  failed  {did}  {reason}")
    return 1 if run.failed else 0


def _import(
    prog: str,
    platform: PlatformSettings,
    settings: IngestSettings,
    path: Path,
    did: str,
    *,
    verify: bool,
    to: str | None,
) -> int:
    from ingest.errors import BrokerError, RepoSyncError
    from ingest.repo_export import ExportError
    from ingest.sync_app import import_car

    if not verify:
        _say(_NO_VERIFY)
    out = sys.stdout.buffer if to == "jsonl" else None
    try:
        export = run_until_signalled(import_car(platform, settings, path=path, did=did, verify=verify, out=out))
    except OSError as err:
        if err.filename is None:
            raise  # not the file: stdout closed, say
        _say(f"{prog}: cannot read {path}: {err.strerror or err}")
        return 1
    except ExportError as err:
        _say(f"{prog}: {path} is not a valid export of {did}'s repo: {err}")
        return 1
    except RepoSyncError as err:
        _say(f"{prog}: cannot verify {path} ({err}); --no-verify imports it without the signature check")
        return 1
    except BrokerError as err:
        _say(f"{prog}: the broker at {platform.kafka_bootstrap} failed: {err}")
        return 1
    if export is None:
        return 130
    checked = "signature verified" if export.signature_checked else "signature NOT checked"
    _say(
        f"imported {len(export.records)} record(s) of {did} at rev {export.verified.rev} ({checked});"
        f" {len(export.drops)} skipped"
    )
    for drop in export.drops[:20]:
        _say(f"  skipped  {drop.path}  {drop.reason.value}: {drop.detail[:120]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
