"""Operators' commands: ``takedown``, ``restore``, ``dead-letters list|reapply`` and ``status``.

Each parses its flags, loads settings (a bad one stops it with the variable's name), calls the part
that owns the work, and prints what happened; a service that cannot be reached is a one-line message
and exit status 1, never a traceback. Results go to stdout, logs to stderr.

- takedown / restore: a moderation event on the log (:class:`ingest.producer.KafkaSink`), applied by
  the projector in order like every other event, so a replay rebuilds it.
- dead-letters list: :func:`api.status.dead_letters_page`, the admin API's own listing.
- dead-letters reapply: :func:`projector.dead_letters.reapply_dead_letters`.
- status: :func:`api.status.collect_from_url`, what the admin API's ``getStatus`` answers.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from runtime.lifecycle import run_until_signalled
from runtime.logging import configure
from runtime.settings import PlatformSettings, SettingsError, load_platform
from schemas.ids import is_did, parse_record_uri


def _say(text: str, *, err: bool = False) -> None:
    (sys.stderr if err else sys.stdout).write(text + "\n")


def _platform(prog: str) -> PlatformSettings | None:
    try:
        platform = load_platform()
    except SettingsError as err:
        _say(f"{prog}: {err}", err=True)
        return None
    configure(platform.log_level, platform.log_format)
    return platform


def _schema(prog: str, given: str | None) -> str | None:
    from projector.settings import load_projector

    try:
        return load_projector(schema_name=given).schema_name
    except SettingsError as err:
        _say(f"{prog}: {err}", err=True)
        return None


# ---- takedown / restore ------------------------------------------------------------------------


def takedown_main(argv: list[str] | None = None) -> int:
    """``plyr-index takedown DID|AT-URI [--reason R]``."""
    return _moderation_main("takedown", argv)


def restore_main(argv: list[str] | None = None) -> int:
    """``plyr-index restore DID|AT-URI [--reason R]``."""
    return _moderation_main("restore", argv)


def _moderation_main(command: str, argv: list[str] | None) -> int:
    from schemas.envelope import ModerationAction, ModerationEvent, Source

    prog = f"plyr-index {command}"
    what = (
        "hide a repo's content, or one record, from every read of this index"
        if command == "takedown"
        else "lift a takedown"
    )
    p = argparse.ArgumentParser(prog=prog, description=f"{what.capitalize()}: a moderation event on the log.")
    p.add_argument("subject", metavar="DID|AT-URI", help="the repo's DID, or one record's at://DID/COLLECTION/RKEY")
    p.add_argument("--reason", help="why (kept with the event, at most 1024 characters)")
    args = p.parse_args(argv)
    did, collection, rkey = args.subject, None, None
    if args.subject.startswith("at://"):
        record = parse_record_uri(args.subject)
        if record is None:
            p.error(f"{args.subject!r} does not name a record by its repo's DID (at://DID/COLLECTION/RKEY)")
        did, collection, rkey = record
    elif not is_did(args.subject):
        p.error(f"{args.subject!r} is neither a DID (did:plc:... or did:web:...) nor a record's AT-URI")
    if args.reason is not None and len(args.reason) > 1024:
        p.error("--reason is longer than 1024 characters")
    platform = _platform(prog)
    if platform is None:
        return 2
    event = ModerationEvent(
        did=did,
        upstream="operator:cli",
        time=datetime.now(UTC),
        source=Source.OPERATOR,
        action=ModerationAction(command),
        reason=args.reason,
        collection=collection,
        rkey=rkey,
    )
    from ingest.errors import BrokerError

    try:
        placed = run_until_signalled(_send(platform, event))
    except BrokerError as err:
        _say(f"{prog}: the broker at {platform.kafka_bootstrap} failed: {err}", err=True)
        return 1
    if placed is None:
        return 130
    partition, offset = placed
    done = "taken down" if command == "takedown" else "restored"
    _say(
        f"{args.subject} {done}: event on {platform.events_topic} partition {partition} offset {offset};"
        " the projector applies it in order"
    )
    return 0


async def _send(platform: PlatformSettings, event: Any) -> tuple[int, int]:
    from aiokafka.errors import KafkaError

    from ingest.errors import BrokerError
    from ingest.producer import KafkaSink, ensure_topic

    await ensure_topic(
        platform.kafka_bootstrap,
        platform.events_topic,
        platform.topic_partitions,
        platform.topic_replication_factor,
    )
    async with KafkaSink(
        platform.kafka_bootstrap,
        platform.events_topic,
        idempotence=platform.kafka_idempotence,
        compression=platform.kafka_compression,
    ) as sink:
        delivery = await sink.send(event)
        await sink.flush()
        assert delivery is not None
        try:
            meta: Any = await delivery
        except KafkaError as err:
            raise BrokerError(f"the event was not acknowledged: {err!r}") from err
    return int(meta.partition), int(meta.offset)


# ---- dead letters --------------------------------------------------------------------------------


def dead_letters_main(argv: list[str] | None = None) -> int:
    """``plyr-index dead-letters list|reapply``."""
    prog = "plyr-index dead-letters"
    p = argparse.ArgumentParser(prog=prog, description="Records the projector could not apply, and why.")
    sub = p.add_subparsers(dest="action", required=True)
    listing = sub.add_parser("list", help="the newest dead letters")
    listing.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    listing.add_argument(
        "--reason-like", help="only reasons containing this (case-insensitive; with a %% it is an ILIKE pattern)"
    )
    listing.add_argument("--json", action="store_true", help="one JSON object per line, raw record included")
    reapply = sub.add_parser(
        "reapply", help="judge every dead letter again with today's lexicons and apply those valid now"
    )
    reapply.add_argument("--batch", type=int, default=500, help="dead letters per transaction (default 500)")
    for sp in (listing, reapply):
        sp.add_argument("--schema", help="read-model schema (env PROJECTOR_SCHEMA_NAME)")
    args = p.parse_args(argv)
    if args.action == "list" and not 1 <= args.limit <= 10_000:
        p.error("--limit must be between 1 and 10000")
    if args.action == "reapply" and not 1 <= args.batch <= 10_000:
        p.error("--batch must be between 1 and 10000")
    platform = _platform(prog)
    schema = _schema(prog, args.schema)
    if platform is None or schema is None:
        return 2
    import asyncpg

    from projector.dead_letters import LogUnavailable

    work = _list(platform, schema, args) if args.action == "list" else _reapply(platform, schema, args.batch)
    try:
        code = run_until_signalled(work)
    except asyncpg.UndefinedTableError:
        _say(f"{prog}: no read models in schema {schema} (run `plyr-index migrate` or a projector)", err=True)
        return 1
    except (OSError, asyncpg.PostgresError) as err:
        _say(f"{prog}: cannot use the database (PLYR_DATABASE_URL): {err}", err=True)
        return 1
    except LogUnavailable as err:
        _say(f"{prog}: {err}", err=True)
        return 1
    return 130 if code is None else code


async def _list(platform: PlatformSettings, schema: str, args: argparse.Namespace) -> int:
    import asyncpg

    from api.status import dead_letters_page
    from schemas.migrate import quote_schema

    conn = await asyncpg.connect(platform.database_url, timeout=10)
    try:
        total = await conn.fetchval(f"SELECT count(*) FROM {quote_schema(schema)}.dead_letters")
        rows = await dead_letters_page(conn, schema, limit=args.limit, reason=args.reason_like)
    finally:
        await conn.close()
    if args.json:
        for row in rows:
            sys.stdout.write(orjson.dumps(row).decode() + "\n")
        return 0
    shown = f" matching {args.reason_like!r}" if args.reason_like else ""
    if not rows:
        _say(f"{total} dead letter(s) in {schema}" + (f"; none{shown}" if total else ""))
    else:
        _say(f"{total} dead letter(s) in {schema}; the {len(rows)} newest{shown}:")
        table = [["id", "when", "where", "record", "reason"]]
        for r in rows:
            record = f"{r['did']}/{r['collection']}/{r['rkey']}@{r['rev']}" if "collection" in r else "-"
            where = f"{r['topic']}[{r['partition']}]@{r['offset']}"
            table.append([str(r["id"]), r["createdAt"], where, record, r["reason"][:160]])
        widths = [max(len(line[i]) for line in table) for i in range(4)]
        for line in table:
            _say("  " + "  ".join(c.ljust(w) for c, w in zip(line[:4], widths, strict=True)) + "  " + line[4])
    return 0


async def _reapply(platform: PlatformSettings, schema: str, batch: int) -> int:
    import asyncpg

    from projector.dead_letters import reapply_dead_letters
    from projector.store import Store
    from projector.validate import RecordValidator

    async with asyncpg.create_pool(platform.database_url, min_size=1, max_size=2) as pool:
        store = Store(pool, schema, RecordValidator(), platform.events_topic)
        report = await reapply_dead_letters(pool, store, schema, platform.kafka_bootstrap, batch=batch)
    _say(
        f"examined {report.examined} record dead letter(s): {report.applied} applied,"
        f" {report.superseded} superseded by a newer version (removed), {report.still_invalid} still invalid,"
        f" {report.missing} not found on the log (left as they were)"
    )
    if report.not_records:
        _say(f"{report.not_records} dead letter(s) are not record versions (undecodable messages): left as they were")
    return 0


# ---- status --------------------------------------------------------------------------------------


def status_main(argv: list[str] | None = None) -> int:
    """``plyr-index status [--api URL] [--schema S] [--json]``."""
    prog = "plyr-index status"
    p = argparse.ArgumentParser(
        prog=prog,
        description="The whole pipeline on one screen: upstream cursors, repos, broker lag per partition,"
        " projectors, dead letters, API health.",
    )
    p.add_argument("--api", help="the API's base URL (default API_PUBLIC_URL)")
    p.add_argument("--schema", help="read-model schema (env PROJECTOR_SCHEMA_NAME)")
    p.add_argument("--json", action="store_true", help="the status as one JSON document")
    args = p.parse_args(argv)
    platform = _platform(prog)
    schema = _schema(prog, args.schema)
    if platform is None or schema is None:
        return 2
    # An unreachable broker is reported on the screen; aiokafka's own lines about it would repeat it.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    api_url = args.api
    if api_url is None:
        from api.settings import load_api

        try:
            api_url = load_api().public_url
        except SettingsError as err:
            _say(f"{prog}: {err}", err=True)
            return 2
    from api.status import collect_from_url
    from api.status_screen import render

    status = run_until_signalled(
        collect_from_url(
            platform.database_url,
            schema=schema,
            bootstrap=platform.kafka_bootstrap,
            topic=platform.events_topic,
            api_url=api_url,
        )
    )
    if status is None:
        return 130
    sys.stdout.write(orjson.dumps(status, option=orjson.OPT_INDENT_2).decode() + "\n" if args.json else render(status))
    return 0
