"""``plyr-index <command> [...]``: dispatch to each part's own entry point.

The parts are imported only when their command runs, so ``plyr-index capture`` does not pay for
FastAPI, and a part's broken import cannot break another part's command.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

# command → ("module:function", one-line help). Later parts add theirs here.
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("plyr_index.up:main", "run the whole system locally: embedded broker, ingest, projector, API"),
    "ingest": ("ingest.__main__:main", "follow firehose upstreams (or a capture) into Kafka"),
    "capture": ("ingest.__main__:capture_main", "record an upstream's raw frames to a file"),
    "backfill": (
        "ingest.__main__:backfill_main",
        "put existing repos' records on the log (discover, --did, --from-car)",
    ),
    "resync": ("ingest.__main__:resync_main", "fetch repos again and make the index match them, deletes included"),
    "project": ("projector.__main__:main", "fold the event log into the Postgres read models"),
    "replay": ("projector.__main__:replay_main", "rebuild the read models from offset 0 and swap them in"),
    "serve": ("api.__main__:main", "serve the read API: XRPC queries, live events, audio stream"),
    "mirror": ("api.mirror:mirror_main", "copy PDS-only audio blobs into the bucket (checked against their CIDs)"),
    "migrate": ("plyr_index.migrate_cmd:main", "apply the database migrations"),
    "status": ("plyr_index.operate:status_main", "the whole pipeline on one screen: cursors, lag, dead letters, API"),
    "takedown": ("plyr_index.operate:takedown_main", "take a repo down in this index (a moderation event on the log)"),
    "restore": ("plyr_index.operate:restore_main", "lift this index's takedown of a repo"),
    "dead-letters": ("plyr_index.operate:dead_letters_main", "list dead letters, or re-apply them after a lexicon fix"),
}


def _usage() -> str:
    width = max(len(c) for c in COMMANDS)
    lines = [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "usage: plyr-index <command> [options]\n\ncommands:\n" + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the named command with the remaining arguments."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help", "help"}:
        sys.stdout.write(_usage())
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        sys.stderr.write(f"plyr-index: unknown command {command!r}\n\n{_usage()}")
        return 2
    module_name, func_name = COMMANDS[command][0].split(":")
    func: Callable[[list[str]], int] = getattr(importlib.import_module(module_name), func_name)
    return func(rest)
