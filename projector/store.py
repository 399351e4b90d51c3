"""The unit of work: one poll's batch → read-model rows, counts, dead letters and consumed offsets, in
ONE Postgres transaction. The only module that opens transactions.

Exactly once in effect: the batch's partitions' rows in ``offsets`` are locked first, and messages
below the stored next offset are skipped, so a batch delivered twice (a crash after commit, a
rebalance race between two projectors) changes nothing the second time. Record events are folded
against the ``records`` ledger rows (locked too) with :mod:`projector.fold.ledger`. Counts are
recomputed for exactly the tracks and artists a batch touched, counting only visible repos, so they
stay right under re-delivery, hides and purges, and reads never aggregate.

Every applied change is appended to the ``changes`` log (:mod:`projector.fold.changes` decides the
rows) as the batch's last write before its offsets, under an advisory lock held to commit, so seq
order is commit order across projectors. Lock order, which keeps several projectors free of
deadlocks: offsets rows by partition, the batch's own ledger rows, then (see ``_lock_shared``) the
claims of the tracks it writes or counts and the artists rows it writes, each sorted, then the
change-log lock. Several batches may commit at once (on lanes of partitions, or in several
projectors): the claims make those that share a track take turns, so each one's counts include what
the other wrote.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from projector import batch_params, holds
from projector.fold import rows
from projector.fold.changes import Change, ChangeLog, Shown
from projector.fold.ledger import Decision, LedgerRow, RecordState, decide, next_row
from projector.fold.rows import COMMENT, LIKE, LIST, PROFILE, TRACK
from projector.fold.snapshot import vanished
from projector.prepare import NUL_REASON, LogMessage, Prepared, PreparedItem, Validator, prepare
from schemas.envelope import (
    AccountEvent,
    IdentityEvent,
    ModerationAction,
    ModerationEvent,
    RecordEvent,
    SnapshotEvent,
)
from schemas.migrate import quote_schema

_TABLES = {TRACK: "tracks", LIKE: "likes", LIST: "lists", COMMENT: "comments"}
# Collections whose rows only their own repo's batches write, and those other batches write too (a
# track's counts, an artist's totals).
_OWNED = (LIKE, COMMENT, LIST)
_SHARED = (TRACK, PROFILE)

# A batch touches a few thousand keys of tables that grow without bound, so its cost must follow the
# batch, never the table. The tables' data is hot in memory (random reads cost little more than
# sequential ones), and JIT compiling a batch's short statements cost more than running them. Every
# join of a batch statement starts from the batch's keys, so it is an index nested loop: a hash or
# merge join would read a whole table per batch (the planner chose one once a batch held thousands
# of keys, and it grew with the table).
# synchronous_commit off: a server crash may lose the last commits, but each one carries its own
# offsets, so the lost batches are consumed again on restart, still exactly once in effect.
_BATCH_SETTINGS = (
    "SET LOCAL jit = off; SET LOCAL random_page_cost = 1.1;"
    " SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off"
)
_ASYNC_COMMIT = "; SET LOCAL synchronous_commit = off"


def _detail(detail: object) -> str | None:
    return None if detail is None else orjson.dumps(detail).decode()


# Claim tracks (0013_track_claims.sql): insert the uris not claimed before, lock the rows of those that
# were. "WHERE false" updates nothing, but ON CONFLICT DO UPDATE locks the conflicting row all the
# same, and waits for a transaction that holds it or has just inserted it.
_CLAIM_TRACKS = (
    "INSERT INTO track_claims (uri) SELECT uri FROM jsonb_array_elements_text($1::jsonb) AS c(uri) ORDER BY uri"
    " ON CONFLICT (uri) DO UPDATE SET uri = EXCLUDED.uri WHERE false"
)
# The change-log rows of a batch in log order, as a FROM item.
_CHANGE_ROWS = batch_params.rows(
    1, ["text"] * 4 + ["jsonb"], ["kind", "did", "uri", "subject_uri", "detail"], ordinality="n"
)
# The (did, collection, rkey) keys of a batch's records, as a FROM item.
_LEDGER_KEYS = batch_params.rows(1, ["text"] * 3, ["did", "collection", "rkey"])


# Per touched track, index lookups only: the cost follows the batch, not the size of likes or
# comments. A liker or commenter counts unless their repo is hidden. Counted once (MATERIALIZED) with
# the old values beside the new, so the update, the all-time order and each artist's likes received
# change only where a count did; returns, per changed track, its artist and the change in likes.
_RECOUNT_TRACKS = """
WITH s AS MATERIALIZED (
    SELECT t.uri, t.did, t.like_count AS old_likes, t.comment_count AS old_comments,
        (SELECT count(DISTINCT l.did) FROM likes l WHERE l.subject_uri = t.uri
            AND NOT EXISTS (SELECT 1 FROM artists a WHERE a.did = l.did AND (NOT a.active OR a.local_takedown))
        ) AS likes,
        (SELECT count(*) FROM comments c WHERE c.subject_uri = t.uri
            AND NOT EXISTS (SELECT 1 FROM artists a WHERE a.did = c.did AND (NOT a.active OR a.local_takedown))
        ) AS comments
    FROM jsonb_array_elements_text($1::jsonb) AS target(uri) JOIN tracks t ON t.uri = target.uri
), counted AS (
    UPDATE tracks t SET like_count = s.likes, comment_count = s.comments FROM s
    WHERE t.uri = s.uri AND (s.likes, s.comments) IS DISTINCT FROM (s.old_likes, s.old_comments)
), ranked AS (
    UPDATE tracks_by_likes b SET like_count = s.likes FROM s WHERE b.uri = s.uri AND s.likes <> s.old_likes
)
SELECT did, likes - old_likes AS delta FROM s WHERE likes <> old_likes
"""

# An artist whose tracks were written or whose status changed: its totals counted again from its tracks.
_RECOUNT_ARTISTS = """
UPDATE artists ar SET track_count = s.n, total_duration = s.d, likes_received = s.l, updated_at = now()
FROM jsonb_array_elements_text($1::jsonb) AS a(did) CROSS JOIN LATERAL (
    SELECT count(*) AS n, coalesce(sum(t.duration), 0) AS d, coalesce(sum(t.like_count), 0) AS l
    FROM tracks t WHERE t.did = a.did
) s
WHERE ar.did = a.did
"""


@dataclass
class BatchResult:
    """What a batch did."""

    applied: int = 0
    stale: int = 0
    skipped_offsets: int = 0
    dead_letters: int = 0
    # rows appended to the change log
    changes: int = 0
    by_collection: dict[str, int] = field(default_factory=dict)
    # The upstream time of the newest event applied (for lag in seconds).
    newest: datetime | None = None


@dataclass
class _Plan:
    ledger: dict[tuple[str, str, str], LedgerRow] = field(default_factory=dict)
    # uri → row values (upsert) or None (delete), per collection; last write in the batch wins
    writes: dict[str, dict[str, tuple[RecordEvent, Any, datetime] | None]] = field(
        default_factory=lambda: {c: {} for c in (TRACK, LIKE, LIST, COMMENT, PROFILE)}
    )
    dead: list[tuple[int, int, str | None, str | None, str | None, str | None, str, str | None]] = field(
        default_factory=list
    )
    # did → (the handle to show: the verified one or None, whether it verified, the PDS origin)
    handles: dict[str, tuple[str | None, bool, str | None]] = field(default_factory=dict)
    statuses: dict[str, tuple[bool, str | None]] = field(default_factory=dict)
    # did → taken down here (True) or restored (False), by an operator
    takedowns: dict[str, bool] = field(default_factory=dict)
    # record uri → an operator's last takedown or restore of that record alone
    moderated: dict[str, holds.RecordModeration] = field(default_factory=dict)
    dids: set[str] = field(default_factory=set)
    # uris deleted and created again within the batch: their old row is replaced, not updated
    reborn: set[str] = field(default_factory=set)
    # like/comment uri → its subject in the read models before the batch
    subjects: dict[str, str] = field(default_factory=dict)
    changes: ChangeLog = field(default_factory=ChangeLog)


async def _bulk(
    conn: asyncpg.Connection,
    insert: str,
    types: Sequence[str],
    rows_: Sequence[tuple[Any, ...]],
    suffix: str = "",
    *,
    select: str = "*",
    names: Sequence[str] = (),
) -> None:
    """One ``INSERT ... SELECT`` for many rows, sent as one JSON parameter (:mod:`projector.batch_params`):
    a single statement instead of executemany's statement per row. ``select`` over the columns (called
    ``names``) can derive columns. Keys must be unique within ``rows_`` (the plan dedupes them)."""
    if not rows_:
        return
    columns = names or [f"c{i}" for i in range(len(types))]
    source = batch_params.rows(1, types, columns)
    await conn.execute(f"{insert} SELECT {select} FROM {source} {suffix}", batch_params.document(rows_))


# Planner statistics are refreshed each time the events applied since the last refresh reach this
# share of all applied before it (and at least _ANALYZE_MIN): a replay grows the tables from nothing,
# and with stale statistics (or a server without autovacuum) the planner estimates a few thousand keys
# against a table it believes is empty and picks full scans, so each batch got slower as tables grew.
# Geometric spacing keeps the total cost of ANALYZE a small constant share of the work. Doubling (rather
# than growing by half) halved that share, a fifth of the server's time over the first 200,000 events
# of the benchmark's log, while the first refreshes still come early (2,000, 4,000, 8,000 ... events).
_ANALYZE_GROWTH = 1.0
_ANALYZE_MIN = 2_000


def changes_lock_key(schema: str) -> int:
    """The advisory lock that orders appends to ``schema``'s change log: a bigint that every process
    derives alike from the schema name (Python's ``hash`` is salted per process; this is not)."""
    digest = hashlib.blake2b(f"plyr-changes:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class Store:
    """Applies batches to the read models in ``schema``."""

    def __init__(
        self, pool: asyncpg.Pool, schema: str, validator: Validator, topic: str, *, wait_for_flush: bool = False
    ) -> None:
        self._pool = pool
        self._schema = quote_schema(schema)
        self._changes_lock = changes_lock_key(schema)
        self._validate = validator
        self._topic = topic
        # Waiting for the WAL flush buys nothing here (see _ASYNC_COMMIT); kept as an option so a
        # benchmark can run the naive baseline with Postgres' default durability.
        self._settings = _BATCH_SETTINGS if wait_for_flush else _BATCH_SETTINGS + _ASYNC_COMMIT
        self._applied_total = 0
        self._applied_at_analyze = 0

    async def refresh_statistics(self) -> None:
        """ANALYZE the read models (outside any batch transaction: it takes no lock that blocks writes)."""
        async with self._pool.acquire() as conn:
            for table in ("records", "artists", "tracks", "likes", "comments", "lists", "list_items"):
                await conn.execute(f"ANALYZE {self._schema}.{table}")
        self._applied_at_analyze = self._applied_total

    async def _keep_statistics(self, applied: int) -> None:
        self._applied_total += applied
        since = self._applied_total - self._applied_at_analyze
        if since >= max(_ANALYZE_MIN, self._applied_at_analyze * _ANALYZE_GROWTH):
            await self.refresh_statistics()

    async def load_offsets(self, partitions: Sequence[int]) -> dict[int, int]:
        """The next offset to consume per partition (absent: start from the beginning)."""
        rows_ = await self._pool.fetch(
            f"SELECT partition, next_offset FROM {self._schema}.offsets WHERE topic = $1 AND partition = ANY($2)",
            self._topic,
            list(partitions),
        )
        return {r["partition"]: r["next_offset"] for r in rows_}

    def prepare(self, messages: Sequence[LogMessage]) -> Prepared:
        """The pure stage, with this store's validator (can run while the previous batch commits)."""
        return prepare(messages, self._validate)

    async def apply(self, messages: Sequence[LogMessage]) -> BatchResult:
        """Prepare and commit a batch (any partitions, offsets ascending per partition)."""
        return await self.commit(self.prepare(messages))

    async def commit(self, prepared: Prepared) -> BatchResult:
        """The database stage: one transaction with the rows, counts, dead letters and offsets."""
        result = BatchResult(newest=prepared.newest)
        if not prepared.items:
            return result
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(f"SET LOCAL search_path TO {self._schema}, public; {self._settings}")
            fresh = await self._claim_offsets(conn, prepared.items, result)
            if any(isinstance(i.event, SnapshotEvent) for i in fresh):
                fresh = await self._expand_snapshots(conn, fresh)
            plan = _Plan()
            for item in fresh:
                if item.event is None:
                    m = item.msg
                    plan.dead.append((m.partition, m.offset, None, None, None, None, item.reason or "", None))
            await self._fold(conn, [i for i in fresh if i.event is not None], plan, result)
            await self._write(conn, plan)
            await self._append_changes(conn, plan.changes.changes)
            await self._store_offsets(conn, [i.msg for i in fresh])
        result.dead_letters = len(plan.dead)
        result.changes = len(plan.changes.changes)
        await self._keep_statistics(result.applied)
        return result

    async def _claim_offsets(
        self, conn: asyncpg.Connection, items: Sequence[PreparedItem], result: BatchResult
    ) -> list[PreparedItem]:
        partitions = sorted({i.msg.partition for i in items})
        await conn.executemany(
            "INSERT INTO offsets (topic, partition, next_offset) VALUES ($1, $2, 0) ON CONFLICT DO NOTHING",
            [(self._topic, p) for p in partitions],
        )
        stored = {
            r["partition"]: r["next_offset"]
            for r in await conn.fetch(
                "SELECT partition, next_offset FROM offsets WHERE topic = $1 AND partition = ANY($2)"
                " ORDER BY partition FOR UPDATE",
                self._topic,
                partitions,
            )
        }
        fresh = [i for i in items if i.msg.offset >= stored[i.msg.partition]]
        result.skipped_offsets = len(items) - len(fresh)
        return fresh

    async def _expand_snapshots(self, conn: asyncpg.Connection, items: list[PreparedItem]) -> list[PreparedItem]:
        """Each snapshot followed by deletes of what its repo held and it does not list: the repo's
        records not deleted in the ledger, and those the batch wrote before the snapshot."""
        dids = sorted({i.event.did for i in items if isinstance(i.event, SnapshotEvent)})
        held: dict[str, set[tuple[str, str]]] = {did: set() for did in dids}
        for r in await conn.fetch(
            "SELECT did, collection, rkey FROM records WHERE did = ANY($1) AND state <> 'deleted'", dids
        ):
            held[r["did"]].add((r["collection"], r["rkey"]))
        out: list[PreparedItem] = []
        for item in items:
            event = item.event
            out.append(item)
            if isinstance(event, RecordEvent) and event.did in held:
                held[event.did].add((event.collection, event.rkey))
            elif isinstance(event, SnapshotEvent):
                out.extend(PreparedItem(item.msg, delete) for delete in vanished(event, held[event.did]))
        return out

    async def _fold(
        self,
        conn: asyncpg.Connection,
        items: list[PreparedItem],
        plan: _Plan,
        result: BatchResult,
    ) -> None:
        keys = {(i.event.did, i.event.collection, i.event.rkey) for i in items if isinstance(i.event, RecordEvent)}
        if keys:
            for r in await conn.fetch(
                f"SELECT r.did, r.collection, r.rkey, r.rev, r.state, r.cid FROM records r JOIN {_LEDGER_KEYS}"
                " USING (did, collection, rkey) FOR UPDATE OF r",
                batch_params.document(keys),
            ):
                plan.ledger[(r["did"], r["collection"], r["rkey"])] = LedgerRow(
                    r["rev"], RecordState(r["state"]), r["cid"]
                )
            await self._load_shown(conn, items, plan)
        for item in items:
            event = item.event
            assert event is not None
            plan.dids.add(event.did)
            if isinstance(event, IdentityEvent):
                # A handle is a claim until ingest verified it both ways: an unverified one is not shown.
                shown = event.handle if event.handle_valid else None
                plan.handles[event.did] = (shown, event.handle_valid, event.pds)
            elif isinstance(event, AccountEvent):
                plan.statuses[event.did] = (event.active, event.status)
                plan.changes.account(event)
                # A purge drops what the batch planned for the repo before it, and leaves its records
                # tombstoned (as the purge statements will), so later events see them as not live.
                if event.status == "deleted":
                    for writes in plan.writes.values():
                        for uri in [u for u in writes if u.startswith(f"at://{event.did}/")]:
                            del writes[uri]
                    for key, row in plan.ledger.items():
                        if key[0] == event.did:
                            plan.ledger[key] = LedgerRow(row.rev, RecordState.DELETED, None)
            elif isinstance(event, RecordEvent):
                self._fold_record(item, event, plan, result)
            elif isinstance(event, ModerationEvent):
                down = event.action is ModerationAction.TAKEDOWN
                if event.uri is None:
                    plan.takedowns[event.did] = down
                else:
                    assert event.collection is not None
                    plan.moderated[event.uri] = holds.RecordModeration(event.did, event.collection, down, event.reason)

    def _fold_record(self, item: PreparedItem, event: RecordEvent, plan: _Plan, result: BatchResult) -> None:
        key = (event.did, event.collection, event.rkey)
        reason = item.reason
        before = plan.ledger.get(key)
        decision = decide(event, before, valid=reason is None)
        if decision is Decision.STALE:
            result.stale += 1
            return
        plan.ledger[key] = next_row(event, decision)
        plan.changes.record(event, before, decision, item.row)
        result.applied += 1
        result.by_collection[event.collection] = result.by_collection.get(event.collection, 0) + 1
        writes = plan.writes.get(event.collection)
        if decision is Decision.UPSERT:
            assert writes is not None
            # indexedAt is when the index first saw this life of the record: an update in the same
            # batch as its create keeps the create's time, as it would across two batches.
            earlier = writes.get(event.uri)
            first_seen = earlier[2] if earlier is not None else event.time
            if event.uri in writes and earlier is None:
                # Deleted earlier in this batch: a new life, so the old row must go first.
                plan.reborn.add(event.uri)
            writes[event.uri] = (event, item.row, first_seen)
            return
        if writes is not None:
            writes[event.uri] = None
        if reason is not None:
            raw = orjson.dumps(event.record).decode() if event.record is not None else None
            if raw is not None and NUL_REASON in reason:
                # jsonb cannot hold it either; the log position is kept, and the log has the record.
                raw = None
            msg = item.msg
            plan.dead.append(
                (msg.partition, msg.offset, event.did, event.collection, event.rkey, event.rev, reason, raw)
            )

    async def _load_shown(self, conn: asyncpg.Connection, items: Sequence[PreparedItem], plan: _Plan) -> None:
        """What the read models show before the batch of its likes, comments, lists and accounts: the old
        subjects (whose counts change) and what the change log needs of an old version."""
        uris: dict[str, list[str]] = {LIKE: [], COMMENT: [], LIST: []}
        accounts: list[str] = []
        for item in items:
            event = item.event
            if isinstance(event, RecordEvent) and event.collection in uris:
                uris[event.collection].append(event.uri)
            elif isinstance(event, AccountEvent):
                accounts.append(event.did)
        if accounts:
            for r in await conn.fetch("SELECT did, active, status FROM artists WHERE did = ANY($1)", accounts):
                plan.changes.accounts[r["did"]] = (r["active"], r["status"])
        if uris[LIKE] or uris[COMMENT]:
            for r in await conn.fetch(
                f"SELECT uri, subject_uri FROM likes WHERE uri = ANY({batch_params.texts(1)})"
                f" UNION ALL SELECT uri, subject_uri FROM comments WHERE uri = ANY({batch_params.texts(2)})",
                batch_params.document(uris[LIKE]),
                batch_params.document(uris[COMMENT]),
            ):
                plan.subjects[r["uri"]] = r["subject_uri"]
                plan.changes.views[r["uri"]] = Shown(subject_uri=r["subject_uri"])
        if uris[LIST]:
            for r in await conn.fetch(
                "SELECT l.uri, l.list_type, l.name,"
                " array(SELECT i.subject_uri FROM list_items i WHERE i.list_uri = l.uri ORDER BY i.position) AS items"
                " FROM lists l WHERE l.uri = ANY($1)",
                uris[LIST],
            ):
                plan.changes.views[r["uri"]] = Shown(list_type=r["list_type"], name=r["name"], items=tuple(r["items"]))

    async def _append_changes(self, conn: asyncpg.Connection, changes: Sequence[Change]) -> None:
        """Append the batch's change log rows, in log order, as the last write before the offsets.

        The transaction-scoped advisory lock, held until commit, makes seq order commit order with
        several projectors: no other batch can draw a seq between this one's insert and its commit, so
        a reader that saw seq N never later finds a committed row below N (and seqs have no gaps but
        those of rolled-back batches). It is taken this late so batches wait on each other only for
        the insert and the commit.
        """
        if not changes:
            return
        await conn.execute("SELECT pg_advisory_xact_lock($1)", self._changes_lock)
        await conn.execute(
            f"INSERT INTO changes (kind, did, uri, subject_uri, detail) SELECT kind, did, uri, subject_uri, detail"
            f" FROM {_CHANGE_ROWS} ORDER BY n",
            batch_params.document((c.kind.value, c.did, c.uri, c.subject_uri, _detail(c.detail)) for c in changes),
        )

    async def _write(self, conn: asyncpg.Connection, plan: _Plan) -> None:
        await _bulk(
            conn, "INSERT INTO artists (did)", ["text"], [(d,) for d in sorted(plan.dids)], "ON CONFLICT DO NOTHING"
        )
        await _bulk(
            conn,
            "INSERT INTO records (did, collection, rkey, rev, state, cid)",
            ["text"] * 6,
            [(d, c, k, r.rev, r.state.value, r.cid) for (d, c, k), r in plan.ledger.items()],
            "ON CONFLICT (did, collection, rkey) DO UPDATE SET rev = EXCLUDED.rev, state = EXCLUDED.state,"
            " cid = EXCLUDED.cid, updated_at = now()",
        )
        # Likes, comments and lists are rows of the batch's own repos, which no other batch writes, so
        # they go in before the claims: a batch that then waits on another's claims has less left to
        # do once it may go on. A batch with moderation writes them after it, as a restore must come
        # first.
        early = not plan.moderated
        if early:
            await self._write_records(conn, plan, _OWNED)
        tracks, artists = await self._lock_shared(conn, plan)
        await holds.moderate(conn, plan.moderated)
        await self._write_records(conn, plan, _SHARED if early else _OWNED + _SHARED)
        written = [uri for c in _TABLES for uri, w in plan.writes[c].items() if w is not None]
        await holds.hold(conn, [*written, *plan.moderated])
        await self._write_repos(conn, plan)
        if plan.dead:
            await conn.executemany(
                'INSERT INTO dead_letters (topic, partition, "offset", did, collection, rkey, rev, reason, raw)'
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb) ON CONFLICT DO NOTHING",
                [(self._topic, *d) for d in plan.dead],
            )
        await self._recount(conn, tracks, artists)

    async def _lock_shared(self, conn: asyncpg.Connection, plan: _Plan) -> tuple[set[str], set[str]]:
        """Claim, in one global order (tracks by uri, then artists by did), every track the batch will
        write or count and every existing artists row it will write; return the tracks and artists to
        recount, all among them.

        A batch writes its own repos' rows, but also the counts of other repos' tracks and artists (a
        like from here to a track there). Two batches on disjoint partitions would otherwise lock such
        rows in their statements' orders and deadlock; claimed up front in sorted order they take
        turns, and no later statement of the batch waits on a lock at all. A track is claimed whether it
        exists or not (a like may come before its track, or while another batch creates it), so a
        recount that waited here reads a snapshot taken after the other batch committed, and counts
        what that one wrote.
        """
        # The old and the new subject of every changed like/comment, every written track, and for a
        # repo whose status changes: its tracks, and what it liked or commented on.
        touched, moderated_artists = await holds.touched(conn, plan.moderated)
        touched |= set(plan.writes[TRACK])
        for collection in (LIKE, COMMENT):
            for uri, write in plan.writes[collection].items():
                if uri in plan.subjects:
                    touched.add(plan.subjects[uri])
                if write is not None:
                    touched.add(write[1].subject_uri)
        if hiding := set(plan.statuses) | set(plan.takedowns):
            for r in await conn.fetch(
                "SELECT uri AS u FROM tracks WHERE did = ANY($1)"
                " UNION SELECT subject_uri FROM likes WHERE did = ANY($1)"
                " UNION SELECT subject_uri FROM comments WHERE did = ANY($1)",
                list(hiding),
            ):
                touched.add(r["u"])
        # A restored track is not in its table yet (it comes back from held_records after this), and
        # nothing else can write it meanwhile: the ledger row of its record is locked.
        restored = {u for u, m in plan.moderated.items() if m.collection == TRACK and not m.takedown}
        found = []
        if claimed := touched | restored:
            # Claimed in uri order before any of them is read: a batch that holds a claim (committing,
            # or creating that track right now) is waited for, and the read below sees what it wrote.
            await conn.execute(_CLAIM_TRACKS, batch_params.document(sorted(claimed)))
            found = await conn.fetch(
                f"SELECT uri, did FROM tracks WHERE uri = ANY({batch_params.texts(1)})",
                batch_params.document(sorted(touched)),
            )
        tracks = {r["uri"] for r in found} | set(plan.writes[TRACK]) | restored
        artists = {uri.split("/")[2] for uri in plan.writes[TRACK]} | set(plan.statuses) | set(plan.takedowns)
        artists |= moderated_artists
        # Only the artists rows a later statement updates: a repo that merely appears in the batch (a
        # liker) is inserted if new, never written, and locking its row would cost a WAL record each.
        profiles = {uri.split("/")[2] for uri in plan.writes[PROFILE]}
        if locked := artists | profiles | set(plan.handles) | {r["did"] for r in found}:
            await conn.execute(
                f"SELECT FROM artists WHERE did = ANY({batch_params.texts(1)}) ORDER BY did FOR UPDATE",
                batch_params.document(sorted(locked)),
            )
        return tracks, artists

    async def _write_records(self, conn: asyncpg.Connection, plan: _Plan, collections: Sequence[str]) -> None:
        for collection, table in _TABLES.items():
            if collection not in collections:
                continue
            gone = [uri for uri, w in plan.writes[collection].items() if w is None or uri in plan.reborn]
            if gone:
                await conn.execute(f"DELETE FROM {table} WHERE uri = ANY($1)", gone)
                await holds.forget(conn, [uri for uri in gone if plan.writes[collection][uri] is None])
                if collection == TRACK:
                    await conn.execute("DELETE FROM tracks_by_likes WHERE uri = ANY($1)", gone)
        track_rows = [w for w in plan.writes[TRACK].values() if w is not None] if TRACK in collections else []
        if track_rows:
            # feature_dids is derived in SQL: unnest() would flatten an array of arrays.
            await _bulk(
                conn,
                "INSERT INTO tracks (uri, did, rkey, cid, title, artist, album, duration, file_type, audio_url,"
                " audio_blob_cid, audio_blob_mime, audio_blob_size, image_url, features, feature_dids,"
                " description, labels, support_gate, created_at, indexed_at, sort_at)",
                [*["text"] * 7, "int4", *["text"] * 4, "int8", "text", "jsonb", "text", "jsonb", "jsonb"]
                + ["timestamptz"] * 2,
                [
                    (
                        e.uri,
                        e.did,
                        e.rkey,
                        r.cid,
                        r.title,
                        r.artist,
                        r.album,
                        r.duration,
                        r.file_type,
                        r.audio_url,
                        r.audio_blob_cid,
                        r.audio_blob_mime,
                        r.audio_blob_size,
                        r.image_url,
                        r.features,
                        r.description,
                        r.labels,
                        r.support_gate,
                        r.created_at,
                        seen,
                    )
                    for e, r, seen in track_rows
                ],
                " ON CONFLICT (uri) DO UPDATE SET cid = EXCLUDED.cid, title = EXCLUDED.title,"
                " artist = EXCLUDED.artist, album = EXCLUDED.album, duration = EXCLUDED.duration,"
                " file_type = EXCLUDED.file_type, audio_url = EXCLUDED.audio_url,"
                " audio_blob_cid = EXCLUDED.audio_blob_cid, audio_blob_mime = EXCLUDED.audio_blob_mime,"
                " audio_blob_size = EXCLUDED.audio_blob_size, image_url = EXCLUDED.image_url,"
                " features = EXCLUDED.features, feature_dids = EXCLUDED.feature_dids,"
                " description = EXCLUDED.description, labels = EXCLUDED.labels,"
                " support_gate = EXCLUDED.support_gate, created_at = EXCLUDED.created_at,"
                " sort_at = LEAST(EXCLUDED.created_at, tracks.indexed_at)",
                select="uri, did, rkey, cid, title, artist, album, duration, file_type, audio_url, audio_blob_cid,"
                " audio_blob_mime, audio_blob_size, image_url, features,"
                " array(SELECT f->>'did' FROM jsonb_array_elements(features) AS f), description, labels,"
                " support_gate, created_at, indexed_at, LEAST(created_at, indexed_at)",
                names=[
                    "uri",
                    "did",
                    "rkey",
                    "cid",
                    "title",
                    "artist",
                    "album",
                    "duration",
                    "file_type",
                    "audio_url",
                    "audio_blob_cid",
                    "audio_blob_mime",
                    "audio_blob_size",
                    "image_url",
                    "features",
                    "description",
                    "labels",
                    "support_gate",
                    "created_at",
                    "indexed_at",
                ],
            )
            # A new track enters the all-time order at zero; the recount moves it.
            await conn.execute(
                "INSERT INTO tracks_by_likes (uri, like_count) SELECT uri, 0 FROM jsonb_array_elements_text($1::jsonb)"
                " AS n(uri) ON CONFLICT DO NOTHING",
                batch_params.document([e.uri for e, _, _ in track_rows]),
            )
        like_rows = [w for w in plan.writes[LIKE].values() if w is not None] if LIKE in collections else []
        if like_rows:
            await _bulk(
                conn,
                "INSERT INTO likes (uri, did, subject_uri, subject_cid, created_at, indexed_at)",
                ["text", "text", "text", "text", "timestamptz", "timestamptz"],
                [(e.uri, e.did, r.subject_uri, r.subject_cid, r.created_at, seen) for e, r, seen in like_rows],
                "ON CONFLICT (uri) DO UPDATE SET subject_uri = EXCLUDED.subject_uri,"
                " subject_cid = EXCLUDED.subject_cid, created_at = EXCLUDED.created_at",
            )
        comment_rows = [w for w in plan.writes[COMMENT].values() if w is not None] if COMMENT in collections else []
        await _bulk(
            conn,
            "INSERT INTO comments (uri, did, subject_uri, subject_cid, text, timestamp_ms, created_at, updated_at,"
            " indexed_at)",
            ["text"] * 5 + ["int8"] + ["timestamptz"] * 3,
            [
                (e.uri, e.did, r.subject_uri, r.subject_cid, r.text, r.timestamp_ms, r.created_at, r.updated_at, seen)
                for e, r, seen in comment_rows
            ],
            "ON CONFLICT (uri) DO UPDATE SET subject_uri = EXCLUDED.subject_uri, subject_cid = EXCLUDED.subject_cid,"
            " text = EXCLUDED.text, timestamp_ms = EXCLUDED.timestamp_ms, created_at = EXCLUDED.created_at,"
            " updated_at = EXCLUDED.updated_at",
        )
        list_rows = [w for w in plan.writes[LIST].values() if w is not None] if LIST in collections else []
        if list_rows:
            await _bulk(
                conn,
                "INSERT INTO lists (uri, did, rkey, cid, name, list_type, item_count, created_at, updated_at,"
                " indexed_at)",
                ["text"] * 6 + ["int4"] + ["timestamptz"] * 3,
                [
                    (e.uri, e.did, e.rkey, r.cid, r.name, r.list_type, len(r.items), r.created_at, r.updated_at, seen)
                    for e, r, seen in list_rows
                ],
                "ON CONFLICT (uri) DO UPDATE SET cid = EXCLUDED.cid, name = EXCLUDED.name,"
                " list_type = EXCLUDED.list_type, item_count = EXCLUDED.item_count,"
                " created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at",
            )
            await conn.execute("DELETE FROM list_items WHERE list_uri = ANY($1)", [e.uri for e, _, _ in list_rows])
            await _bulk(
                conn,
                "INSERT INTO list_items (list_uri, position, subject_uri, subject_cid)",
                ["text", "int4", "text", "text"],
                [(e.uri, i, s_uri, s_cid) for e, r, _ in list_rows for i, (s_uri, s_cid) in enumerate(r.items)],
            )
        profiles = []
        for uri, w in plan.writes[PROFILE].items() if PROFILE in collections else ():
            row = w[1] if w is not None else rows.ProfileRow(None, None, None)
            profiles.append((uri.split("/")[2], row.bio, row.avatar, row.created_at))
        if profiles:
            await conn.executemany(
                "UPDATE artists SET bio = $2, avatar = $3, profile_created_at = $4, updated_at = now() WHERE did = $1",
                profiles,
            )

    async def _write_repos(self, conn: asyncpg.Connection, plan: _Plan) -> None:
        if plan.handles:
            await conn.executemany(
                "UPDATE artists SET handle = $2, handle_valid = $3, pds = $4, updated_at = now() WHERE did = $1",
                [(did, *identity) for did, identity in plan.handles.items()],
            )
        if plan.takedowns:
            await conn.executemany(
                "UPDATE artists SET local_takedown = $2, updated_at = now() WHERE did = $1",
                list(plan.takedowns.items()),
            )
        if not plan.statuses:
            return
        await conn.executemany(
            "UPDATE artists SET active = $2, status = $3, updated_at = now() WHERE did = $1",
            [(did, active, status) for did, (active, status) in plan.statuses.items()],
        )
        purged = [did for did, (_, status) in plan.statuses.items() if status == "deleted"]
        if purged:
            await conn.execute(
                "DELETE FROM tracks_by_likes b USING tracks t WHERE t.uri = b.uri AND t.did = ANY($1)", purged
            )
            for table in ("tracks", "likes", "comments", "lists"):
                await conn.execute(f"DELETE FROM {table} WHERE did = ANY($1)", purged)
            await holds.purge(conn, purged)
            # The ledger keeps tombstones, so nothing older can bring the repo's records back.
            await conn.execute(
                "UPDATE records SET state = 'deleted', cid = NULL, updated_at = now() WHERE did = ANY($1)",
                purged,
            )
            await conn.execute(
                "UPDATE artists SET bio = NULL, avatar = NULL, profile_created_at = NULL WHERE did = ANY($1)",
                purged,
            )

    async def _recount(self, conn: asyncpg.Connection, tracks: set[str], artists: set[str]) -> None:
        """Count again the likes and comments of the touched ``tracks``, and the totals of ``artists``;
        every other artist whose tracks' like counts moved gets the difference added to its likes
        received (its rows are locked, so the difference is exact)."""
        moved: dict[str, int] = {}
        if tracks:
            for r in await conn.fetch(_RECOUNT_TRACKS, batch_params.document(sorted(tracks))):
                moved[r["did"]] = moved.get(r["did"], 0) + r["delta"]
        if artists:
            await conn.execute(_RECOUNT_ARTISTS, batch_params.document(sorted(artists)))
        if moved := {did: n for did, n in moved.items() if n and did not in artists}:
            await conn.execute(
                "UPDATE artists ar SET likes_received = ar.likes_received + n.delta, updated_at = now()"
                f" FROM {batch_params.rows(1, ['text', 'int8'], ['did', 'delta'])} WHERE ar.did = n.did",
                batch_params.document(moved.items()),
            )

    async def _store_offsets(self, conn: asyncpg.Connection, messages: Sequence[LogMessage]) -> None:
        last: dict[int, int] = {}
        for m in messages:
            last[m.partition] = max(last.get(m.partition, -1), m.offset)
        if last:
            await conn.executemany(
                "UPDATE offsets SET next_offset = $3, updated_at = now() WHERE topic = $1 AND partition = $2",
                [(self._topic, p, o + 1) for p, o in last.items()],
            )

    # --- Operators: dead letters re-applied after a lexicon fix (driven by projector/dead_letters.py) ---

    async def reapply(self, letters: Sequence[tuple[int, PreparedItem]]) -> ReapplyResult:
        """Re-apply dead-lettered record versions, each given as (dead letter id, the version prepared
        again from the log with today's lexicons), in ONE transaction with the batch's rules.

        A version valid now is applied only while the ledger still holds it as the current, invalid
        version (same rev): its row is written, counts recomputed, change-log rows appended, and its dead
        letter removed. A version valid now whose record moved on (newer rev) loses its dead letter and
        changes nothing. One still invalid keeps its dead letter, with today's reason. The ledger rows are
        locked NOWAIT: this never waits on a projector's batch, so it cannot deadlock with one (a
        ``LockNotAvailableError`` means "try again")."""
        result = ReapplyResult()
        records = [(letter, item, item.event) for letter, item in letters if isinstance(item.event, RecordEvent)]
        if not records:
            return result
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(f"SET LOCAL search_path TO {self._schema}, public; {self._settings}")
            keys = sorted({(e.did, e.collection, e.rkey) for _, _, e in records})
            ledger = {
                (r["did"], r["collection"], r["rkey"]): LedgerRow(r["rev"], RecordState(r["state"]), r["cid"])
                for r in await conn.fetch(
                    f"SELECT r.did, r.collection, r.rkey, r.rev, r.state, r.cid FROM records r JOIN {_LEDGER_KEYS}"
                    " USING (did, collection, rkey) FOR UPDATE OF r NOWAIT",
                    batch_params.document(keys),
                )
            }
            plan = _Plan()
            gone: list[int] = []
            reasons: list[tuple[int, str]] = []
            for letter, item, event in records:
                if item.reason is not None or event.record is None:
                    reasons.append((letter, item.reason or "not a record version"))
                    continue
                gone.append(letter)
                key = (event.did, event.collection, event.rkey)
                before = ledger.get(key)
                if before != LedgerRow(event.rev, RecordState.INVALID, None):
                    result.superseded += 1
                    continue
                ledger[key] = plan.ledger[key] = next_row(event, Decision.UPSERT)
                plan.changes.record(event, before, Decision.UPSERT, item.row)
                plan.writes[event.collection][event.uri] = (event, item.row, event.time)
                plan.dids.add(event.did)
                result.applied += 1
            await self._write(conn, plan)
            await self._append_changes(conn, plan.changes.changes)
            await conn.execute("DELETE FROM dead_letters WHERE id = ANY($1)", gone)
            await conn.execute(
                "UPDATE dead_letters d SET reason = n.reason FROM unnest($1::int8[], $2::text[]) AS n(id, reason)"
                " WHERE d.id = n.id AND d.reason <> n.reason",
                [letter for letter, _ in reasons],
                [reason for _, reason in reasons],
            )
        result.still_invalid = len(reasons)
        result.changes = len(plan.changes.changes)
        return result


@dataclass
class ReapplyResult:
    """What :meth:`Store.reapply` did with a batch of dead letters."""

    applied: int = 0
    superseded: int = 0
    still_invalid: int = 0
    changes: int = 0
