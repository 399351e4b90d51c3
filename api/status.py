"""What an operator sees of the whole pipeline: ``plyr-index status`` and the admin API's ``getStatus``.

One read of every part's own records, each section independent, so a part that is missing or down is
named as such and the rest is still shown (never a traceback):
- upstreams: the ingester's durable cursors (``plyr_ingest.cursors``: seq, when saved, halted);
- repos: ``plyr_ingest.repos`` by sync state;
- broker: each partition's end offset next to the projector's stored next offset (``<schema>.offsets``),
  their difference being the lag in messages;
- projectors: their heartbeats (lag in seconds, last seen);
- dead letters: the total and the five commonest reasons;
- API: ``/health`` and ``/ready`` (the CLI asks over HTTP; the API answers for itself).

A section's ``state`` is ``ok``, ``absent`` (that part never ran against this database or broker: its
table or topic does not exist) or ``unavailable`` (the database or broker cannot be reached). The
shape is the output of ``fm.plyr.index.admin.getStatus`` (lexicons/fm/plyr/index/admin/). Read-only:
the API may not import ingest or projector, so the tables are read here by their SQL contracts
(schemas/sql/).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from api.views import when
from schemas.migrate import quote_schema

Status = dict[str, Any]
ApiProbe = Callable[[], Awaitable[dict[str, Any]]]
# asyncpg's Pool and Connection both answer fetch/fetchrow/fetchval.
Db = Any

# The ingester's schema (ingest/cursor.py INGEST_SCHEMA; schemas/sql/ingest/).
INGEST_SCHEMA = "plyr_ingest"
# A projector beats about once a second; silent for this long, it is not counted as running.
HEARTBEAT_FRESH_SECONDS = 30.0
TOP_REASONS = 5

OK, ABSENT, UNAVAILABLE = "ok", "absent", "unavailable"


def _now() -> datetime:
    return datetime.now(UTC)


async def readiness(db: Db, schema: str, max_lag_seconds: float) -> tuple[int, dict[str, Any]]:
    """``/ready``: 200 when a projector beat in the last 30 s with a lag under ``max_lag_seconds``,
    else 503 with the reason."""
    try:
        row = await db.fetchrow(
            f"SELECT max(lag_seconds) AS lag, count(*) AS projectors FROM {quote_schema(schema)}.projector_heartbeats"
            " WHERE beat_at > now() - make_interval(secs => $1)",
            HEARTBEAT_FRESH_SECONDS,
        )
    except (OSError, asyncpg.PostgresError) as err:
        return 503, {"status": "unavailable", "reason": f"database: {type(err).__name__}"}
    if not row["projectors"]:
        return 503, {"status": "unavailable", "reason": "no projector has reported lately"}
    lag = float(row["lag"])
    if lag > max_lag_seconds:
        return 503, {"status": "unavailable", "reason": "projector lag", "lagSeconds": lag}
    return 200, {"status": "ready", "lagSeconds": lag, "projectors": row["projectors"]}


async def probe_api(url: str, *, seconds: float = 2.0) -> dict[str, Any]:
    """GET ``url``/health and ``url``/ready with a short deadline; ``unreachable`` when it does not answer."""
    out: dict[str, Any] = {"url": url}
    base = url.rstrip("/")
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=seconds)) as session:
            async with session.get(f"{base}/health") as health:
                out["health"] = "ok" if health.status == 200 else f"HTTP {health.status}"
            async with session.get(f"{base}/ready") as ready:
                body = await ready.json(content_type=None) if ready.status in (200, 503) else {}
                out["ready"] = str(body.get("status", f"HTTP {ready.status}"))
                if body.get("reason"):
                    out["detail"] = str(body["reason"])
    except (aiohttp.ClientError, TimeoutError, ValueError, OSError) as err:
        out.setdefault("health", "unreachable")
        out.setdefault("ready", "unreachable")
        out["detail"] = type(err).__name__ if not str(err) else f"{type(err).__name__}: {err}"[:200]
    return out


async def _exists(db: Db, table: str) -> bool:
    return await db.fetchval("SELECT to_regclass($1) IS NOT NULL", table) is True


async def _upstreams(db: Db) -> dict[str, Any]:
    table = f"{INGEST_SCHEMA}.cursors"
    if not await _exists(db, table):
        return {"state": ABSENT, "note": f"no {table}: the ingester never ran against this database", "cursors": []}
    cursors = []
    for r in await db.fetch(f"SELECT upstream, seq, halted, updated_at FROM {table} ORDER BY upstream"):
        cursor: dict[str, Any] = {"upstream": r["upstream"], "savedAt": when(r["updated_at"])}
        if r["seq"] is not None:
            cursor["seq"] = r["seq"]
        if r["halted"]:
            cursor["halted"] = r["halted"]
        cursors.append(cursor)
    return {"state": OK, "cursors": cursors}


async def _repos(db: Db) -> dict[str, Any]:
    table = f"{INGEST_SCHEMA}.repos"
    if not await _exists(db, table):
        return {"state": ABSENT, "note": f"no {table}: repo sync state is not kept here", "byState": [], "total": 0}
    rows = await db.fetch(f"SELECT sync_state, count(*) AS n FROM {table} GROUP BY sync_state ORDER BY sync_state")
    by_state = [{"state": r["sync_state"], "count": r["n"]} for r in rows]
    return {"state": OK, "byState": by_state, "total": sum(s["count"] for s in by_state)}


async def _projectors(db: Db, schema: str) -> dict[str, Any]:
    table = f"{quote_schema(schema)}.projector_heartbeats"
    if not await _exists(db, table):
        return {"state": ABSENT, "note": f"no {table}: no projector ever ran on schema {schema}", "members": []}
    rows = await db.fetch(
        f"SELECT member, group_id, lag_seconds, beat_at, beat_at > now() - make_interval(secs => $1) AS fresh"
        f" FROM {table} ORDER BY group_id, member",
        HEARTBEAT_FRESH_SECONDS,
    )
    members = [
        {
            "member": r["member"],
            "groupId": r["group_id"],
            "lagMs": round(r["lag_seconds"] * 1000),
            "lastSeen": when(r["beat_at"]),
            "running": bool(r["fresh"]),
        }
        for r in rows
    ]
    return {"state": OK, "members": members}


async def _dead_letters(db: Db, schema: str) -> dict[str, Any]:
    table = f"{quote_schema(schema)}.dead_letters"
    if not await _exists(db, table):
        return {"state": ABSENT, "note": f"no {table}: the read models are not migrated", "total": 0, "topReasons": []}
    total = await db.fetchval(f"SELECT count(*) FROM {table}")
    rows = await db.fetch(
        f"SELECT reason, count(*) AS n FROM {table} GROUP BY reason ORDER BY n DESC, reason LIMIT $1", TOP_REASONS
    )
    return {"state": OK, "total": total, "topReasons": [{"reason": r["reason"], "count": r["n"]} for r in rows]}


# The rates look at the change log's newest rows only (a range of its primary key), so a status costs
# the same on a log of a billion rows; past this many rows in the window, the window is shortened.
RATE_WINDOW_S = 300
RATE_MAX_ROWS = 100_000


async def _rates(db: Db, schema: str) -> dict[str, Any]:
    table = f"{quote_schema(schema)}.changes"
    if not await _exists(db, table):
        return {
            "state": ABSENT,
            "note": f"no {table}: the read models are not migrated",
            "windowSeconds": 0,
            "byCollection": [],
        }
    rows = await db.fetch(
        "SELECT split_part(kind, '.', 1) AS collection, count(*) AS n, min(at) AS since, bool_or(capped) AS capped"
        f" FROM (SELECT kind, at, count(*) OVER () = $2 AS capped FROM {table} ORDER BY seq DESC LIMIT $2) c"
        " WHERE at > now() - make_interval(secs => $1) GROUP BY 1 ORDER BY n DESC, 1",
        RATE_WINDOW_S,
        RATE_MAX_ROWS,
    )
    window = RATE_WINDOW_S
    if any(r["capped"] for r in rows):
        window = max(1, round((_now() - min(r["since"] for r in rows)).total_seconds()))
    return {
        "state": OK,
        "windowSeconds": window,
        "byCollection": [{"collection": r["collection"], "count": r["n"]} for r in rows],
    }


async def _projected(db: Db, schema: str, topic: str) -> dict[int, int] | None:
    table = f"{quote_schema(schema)}.offsets"
    if not await _exists(db, table):
        return None
    rows = await db.fetch(f"SELECT partition, next_offset FROM {table} WHERE topic = $1", topic)
    return {r["partition"]: r["next_offset"] for r in rows}


async def end_offsets(bootstrap: str, topic: str, *, seconds: float = 5.0) -> dict[int, int] | None:
    """Each partition's end offset (None: no such topic); raises KafkaError or TimeoutError.

    The end is the high watermark a fetch reports, read by fetching the partition's last record batch:
    ListOffsets alone would do on Apache Kafka, but the embedded tansu broker answers it with the base
    offset of the last batch plus one, short by the rest of that batch.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="latest",
        max_partition_fetch_bytes=1,  # one batch per partition: the broker sends at least one
        request_timeout_ms=int(seconds * 1000),
    )
    try:
        async with asyncio.timeout(seconds):
            await consumer.start()
            if topic not in await consumer.topics():
                return None
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            listed = await consumer.end_offsets(tps)
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, max(listed[tp] - 1, 0))
            while any(consumer.highwater(tp) is None for tp in tps):
                await consumer.getmany(timeout_ms=200, max_records=1)
        return {tp.partition: max(consumer.highwater(tp) or 0, listed[tp]) for tp in tps}
    finally:
        with contextlib.suppress(KafkaError, OSError):
            await consumer.stop()


def _broker(
    bootstrap: str,
    topic: str,
    ends: dict[int, int] | None,
    error: str | None,
    projected: dict[int, int] | None,
    projected_note: str | None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"bootstrap": bootstrap, "topic": topic}
    if error is not None:
        out.update(state=UNAVAILABLE, note=f"broker unreachable: {error}")
    elif ends is None:
        out.update(state=ABSENT, note=f"no topic {topic} on the broker: nothing was ever ingested")
    else:
        out["state"] = OK
    if projected_note is not None:
        out["note"] = f"{out['note']}; {projected_note}" if "note" in out else projected_note
    partitions = []
    total = 0
    for p in sorted(set(ends or {}) | set(projected or {})):
        entry: dict[str, Any] = {"partition": p}
        if ends is not None and p in ends:
            entry["endOffset"] = ends[p]
        if projected is not None:
            entry["projected"] = projected.get(p, 0)
        if "endOffset" in entry and "projected" in entry:
            entry["lag"] = max(entry["endOffset"] - entry["projected"], 0)
            total += entry["lag"]
        partitions.append(entry)
    out["partitions"] = partitions
    if ends is not None and projected is not None:
        out["totalLag"] = total
    return out


async def _db_sections(db: Db, schema: str, topic: str) -> tuple[Status, dict[int, int] | None]:
    sections: Status = {
        "upstreams": await _upstreams(db),
        "repos": await _repos(db),
        "projectors": await _projectors(db, schema),
        "deadLetters": await _dead_letters(db, schema),
        "rates": await _rates(db, schema),
    }
    return sections, await _projected(db, schema, topic)


async def collect(
    db: Db | None,
    db_error: str | None,
    *,
    schema: str,
    bootstrap: str,
    topic: str,
    api: ApiProbe,
) -> Status:
    """The status of every part (see the module docstring). ``db`` is None when the database could not
    be reached (``db_error`` says why)."""
    status: Status = {"generatedAt": when(_now()), "schema": schema}
    broker_task = asyncio.ensure_future(end_offsets(bootstrap, topic))
    api_task = asyncio.ensure_future(api())
    projected: dict[int, int] | None = None
    if db is not None:
        try:
            sections, projected = await _db_sections(db, schema, topic)
            status.update(database={"reachable": True}, **sections)
        except (OSError, asyncpg.PostgresError) as err:
            db_error = f"{type(err).__name__}: {err}"
    if "database" not in status:
        status["database"] = {"reachable": False, "error": db_error or "unknown"}
        gone = {"state": UNAVAILABLE, "note": "database unreachable"}
        status["upstreams"] = {**gone, "cursors": []}
        status["repos"] = {**gone, "byState": [], "total": 0}
        status["projectors"] = {**gone, "members": []}
        status["deadLetters"] = {**gone, "total": 0, "topReasons": []}
        status["rates"] = {**gone, "windowSeconds": 0, "byCollection": []}
    ends: dict[int, int] | None = None
    error = None
    try:
        ends = await broker_task
    except (KafkaError, TimeoutError, OSError) as err:
        error = str(err) or type(err).__name__
    if "database" in status and not status["database"]["reachable"]:
        projected_note: str | None = "projected offsets unknown: database unreachable"
    else:
        projected_note = None if projected is not None else "no projector offsets in this schema"
    status["broker"] = _broker(bootstrap, topic, ends, error, projected, projected_note)
    status["api"] = await api_task
    return status


async def collect_from_url(
    database_url: str, *, schema: str, bootstrap: str, topic: str, api_url: str, api_timeout: float = 2.0
) -> Status:
    """:func:`collect` with a connection of its own (the CLI) and the API asked over HTTP."""
    conn = None
    error = None
    try:
        conn = await asyncpg.connect(database_url, timeout=5, server_settings={"statement_timeout": "10000"})
    except (OSError, asyncpg.PostgresError, TimeoutError) as err:
        error = f"{type(err).__name__}: {err}"
    try:
        return await collect(
            conn,
            error,
            schema=schema,
            bootstrap=bootstrap,
            topic=topic,
            api=lambda: probe_api(api_url, seconds=api_timeout),
        )
    finally:
        if conn is not None:
            await conn.close()


_DEAD_LETTER_COLUMNS = 'id, topic, partition, "offset", did, collection, rkey, rev, reason, raw, created_at'


def reason_pattern(text: str) -> str:
    """A reason filter as an ILIKE pattern: a plain text matches anywhere; with a ``%`` it is the pattern."""
    return text if "%" in text else f"%{text}%"


def dead_letter_view(row: Any) -> dict[str, Any]:
    """A ``dead_letters`` row as ``fm.plyr.index.admin.defs#deadLetterView`` (absent fields left out)."""
    view: dict[str, Any] = {
        "id": row["id"],
        "topic": row["topic"],
        "partition": row["partition"],
        "offset": row["offset"],
        "reason": row["reason"],
        "createdAt": when(row["created_at"]),
    }
    for key in ("did", "collection", "rkey", "rev"):
        if row[key] is not None:
            view[key] = row[key]
    raw = row["raw"]
    if raw is not None:
        view["raw"] = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
    return view


async def dead_letters_page(
    db: Db, schema: str, *, limit: int, reason: str | None = None, before: int | None = None
) -> list[dict[str, Any]]:
    """Up to ``limit`` dead letters, newest first, below id ``before``, whose reason matches ``reason``
    (:func:`reason_pattern`)."""
    where = ["($2::int8 IS NULL OR id < $2)", "($3::text IS NULL OR reason ILIKE $3)"]
    rows = await db.fetch(
        f"SELECT {_DEAD_LETTER_COLUMNS} FROM {quote_schema(schema)}.dead_letters WHERE {' AND '.join(where)}"
        " ORDER BY id DESC LIMIT $1",
        limit,
        before,
        None if reason is None else reason_pattern(reason),
    )
    return [dead_letter_view(r) for r in rows]
