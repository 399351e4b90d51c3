"""Read-API benchmark: a realistic request mix at a fixed rate, against the asyncpg floor and a naive design.

    python -m bench.api_mix [--tracks N --artists N --likes N --lists N --rate R --seconds S]
                            [--server local|in-memory]

Loads (or reuses, see ``bench/api_load.py``) a read model in the database ``plyr_bench_api`` on the
server of PLYR_BENCH_PG (default the local one), or with ``--server in-memory`` on an embedded
PostgreSQL whose shared buffers hold the whole database (``runtime.embedded_pg.IN_MEMORY``; its data
directory is kept, so a later run reuses the load, and every relation of the schema is read into the
buffers with pg_prewarm before the runs), then starts the real API (``api.app.create_app`` under
uvicorn) in a subprocess, and drives it from this process with an open-loop generator: requests leave
at fixed times (``rate`` per second) whatever the answers do, and each latency counts from the time the
request was due, so a stall shows in the figures instead of slowing the generator (no coordinated
omission). The generator runs on uvloop, as the API does, so less of its own time is in each latency.
Mix: latest 25% (first page, or a page behind a cursor taken from earlier pages), top 15%
(all time or this week), track 20%, artist 10%, album 10%, search 10%, stream 10% (HEAD, expects 307;
skipped and said so when the app does not serve ``/stream``, its share going to the others).

The API runs as deployed, its feed pages (latest, top) shared for API_FEED_CACHE_SECONDS. Side by
side in the same run, over the same requests at the same rate:
- nocache (``--paths`` must name it): the same API with that cache off, every page computed;
- floor: the statements the API runs for each request, recorded by calling the API's own query
  handlers against a recording pool, replayed straight through asyncpg (a pool opened by
  ``api.app.open_pool``, so the same session settings) with no HTTP, routing or JSON;
- naive: the same statements with every maintained counter counted at read time instead (a track's
  likes by ``count(DISTINCT did)`` over its likes, an artist's totals by aggregating its tracks and
  their likes, top tracks by ``GROUP BY`` over all likes, or those of the window).
Requests still unanswered ``--drain`` seconds after the last one was due are cancelled and reported as
backlog; their latency counts as at least the time they waited.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import math
import os
import random
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast
from urllib.parse import urlencode

import aiohttp
import asyncpg
import uvloop
from fastapi import FastAPI, Request
from prometheus_client import CollectorRegistry

from api.app import create_app, open_pool
from api.queries import artists, lists, search, tracks
from api.search_words import rebuild
from api.settings import ApiSettings
from api.sql import ARTIST_COLUMNS, TRACK_COLUMNS, TRACKS
from api.stream import stream_metrics
from api.xrpc import parse_params, query_lexicons
from bench.api_load import CDN_ORIGIN, SCHEMA, Sizes, cached, database_url, load, upgrade
from projector.ranking import WINDOWS, refresh_top_tracks
from runtime.embedded_pg import IN_MEMORY, running_embedded
from runtime.logging import configure

ADMIN = os.environ.get("PLYR_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
# The in-memory server's cluster (runtime.embedded_pg.data_directory maps it under /var/tmp as root).
IN_MEMORY_DIR = Path.home() / ".cache" / "plyr-index" / "bench-api-pg"
MIX = {"latest": 25, "top": 15, "track": 20, "artist": 10, "album": 10, "search": 10, "stream": 10}
STREAM_ROUTE = "/stream/{did}/{rkey}"
_NS = "fm.plyr.index."
Step = list[tuple[str, str, tuple[Any, ...]]]  # statements run on one acquired connection
Plan = list[Step]


@dataclass(frozen=True, slots=True)
class Req:
    """One request of the mix: what the API is asked, and which handler answers it."""

    kind: str
    path: str
    query: tuple[tuple[str, str], ...] = ()

    @property
    def url(self) -> str:
        return self.path + ("?" + urlencode(self.query) if self.query else "")


def serve_app() -> FastAPI:
    """uvicorn's factory in the API subprocess (``--factory bench.api_mix:serve_app``)."""
    configure("WARNING", "json")
    return create_app(os.environ["PLYR_BENCH_API_DSN"], settings(os.environ["PLYR_BENCH_API_URL"]))


def settings(public_url: str) -> ApiSettings:
    """The API's settings over the benchmark schema (audio on a trusted CDN, so streams redirect)."""
    # One load generator is one client address: the per-client rate limit would measure itself. The
    # data does not change during a run, so the search vocabulary built before it (main_async) is not
    # rebuilt in the middle of one.
    # The feed cache as deployed unless a path turns it off (PLYR_BENCH_API_FEED_CACHE, see api_path).
    feed = os.environ.get("PLYR_BENCH_API_FEED_CACHE")
    return ApiSettings(
        schema_name=SCHEMA,
        public_url=public_url,
        trusted_cdn_origins=(CDN_ORIGIN,),
        rate_limit_per_second=0,
        search_words_refresh_seconds=10 * 365 * 86400,
        feed_cache_seconds=ApiSettings.model_fields["feed_cache_seconds"].default if feed is None else float(feed),
    )


# --- recording the API's statements ----------------------------------------------------------------


class _StepConn:
    def __init__(self, conn: asyncpg.Connection, step: Step) -> None:
        self._conn, self._step = conn, step

    async def fetch(self, sql: str, *args: Any) -> Any:
        self._step.append(("fetch", sql, args))
        return await self._conn.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        self._step.append(("fetchrow", sql, args))
        return await self._conn.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        self._step.append(("fetchval", sql, args))
        return await self._conn.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> Any:
        self._step.append(("execute", sql, args))
        return await self._conn.execute(sql, *args)

    @asynccontextmanager
    async def transaction(self, **options: Any) -> AsyncIterator[None]:
        self._step.append(("begin", "", tuple(sorted(options.items()))))
        async with self._conn.transaction(**options):
            yield
        self._step.append(("commit", "", ()))


class Recorder:
    """Stands in for the API's pool: runs each statement and writes it down, grouped as acquired."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.plan: Plan = []

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[_StepConn]:
        step: Step = []
        self.plan.append(step)
        async with self._pool.acquire() as conn:
            yield _StepConn(conn, step)

    async def fetch(self, sql: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchval(sql, *args)


_HANDLERS = {
    "latest": (tracks.get_latest_tracks, "getLatestTracks"),
    "top": (tracks.get_top_tracks, "getTopTracks"),
    "track": (tracks.get_track, "getTrack"),
    "artist": (artists.get_artist, "getArtist"),
    "album": (lists.get_list, "getList"),
    "search": (search.search, "search"),
}


async def record(pool: asyncpg.Pool, api: ApiSettings, req: Req, sources: Any) -> tuple[Plan, Any]:
    """The statements the API runs for ``req`` (through its own handler), and the handler's answer."""
    recorder = Recorder(pool)
    state = SimpleNamespace(
        pool=recorder,
        settings=api,
        audio_sources=sources,
        stream_redirects=stream_metrics(CollectorRegistry()),
    )
    request = cast(Request, SimpleNamespace(app=SimpleNamespace(state=state)))
    if req.kind == "stream":
        from api.stream import stream_head

        _, did, rkey = req.path.rsplit("/", 2)
        answer: Any = await stream_head(request, did, rkey)
    else:
        handler, name = _HANDLERS[req.kind]
        raw = {k: [v] for k, v in req.query}
        answer = await handler(request, parse_params(query_lexicons()[_NS + name], raw))
    return recorder.plan, answer


async def replay(pool: asyncpg.Pool, plan: Plan, explain: list[str] | None = None) -> None:
    """Run a recorded plan: each step on one connection from ``pool``, in the handler's transactions.
    With ``explain``, each query runs as EXPLAIN ANALYZE instead and the plans are appended to it."""
    for step in plan:
        async with pool.acquire() as conn:
            tx: Any = None
            try:
                for method, sql, args in step:
                    if method == "begin":
                        tx = conn.transaction(**dict(args))
                        await tx.start()
                    elif method == "commit":
                        await tx.commit()
                        tx = None
                    elif explain is not None and method != "execute":
                        rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *args)
                        explain += [sql, *(r[0] for r in rows), ""]
                    else:
                        await getattr(conn, method)(sql, *args)
            finally:
                if tx is not None:
                    await tx.rollback()


# --- the naive design: counters counted at read time -----------------------------------------------

_LIKER_SHOWN = "NOT EXISTS (SELECT 1 FROM artists h WHERE h.did = l.did AND (NOT h.active OR h.local_takedown))"
_COUNTED_LIKES = f"(SELECT count(DISTINCT l.did) FROM likes l WHERE l.subject_uri = t.uri AND {_LIKER_SHOWN})"
NAIVE_TRACK_COLUMNS = TRACK_COLUMNS.replace("t.like_count,", f"{_COUNTED_LIKES} AS like_count,")
NAIVE_ARTIST_COLUMNS = (
    ARTIST_COLUMNS.replace("a.track_count", "(SELECT count(*) FROM tracks x WHERE x.did = a.did) AS track_count")
    .replace(
        "a.likes_received",
        "(SELECT count(DISTINCT (l.did, l.subject_uri)) FROM tracks x JOIN likes l ON l.subject_uri = x.uri"
        f" WHERE x.did = a.did AND {_LIKER_SHOWN}) AS likes_received",
    )
    .replace(
        "a.total_duration", "(SELECT coalesce(sum(x.duration), 0) FROM tracks x WHERE x.did = a.did) AS total_duration"
    )
)
_NAIVE_TOP = (
    "SELECT {cols}, c.likers FROM (SELECT l.subject_uri AS uri, count(DISTINCT l.did) AS likers FROM likes l"
    " WHERE {where} GROUP BY l.subject_uri) c JOIN {tracks} ON t.uri = c.uri"
    " ORDER BY c.likers DESC, t.uri DESC LIMIT $1"
)


def naive_plan(req: Req, plan: Plan) -> Plan:
    """``plan`` with the maintained counters replaced by counting at read time."""
    out: Plan = []
    for i, step in enumerate(plan):
        new: Step = []
        for method, sql, args in step:
            if req.kind == "top" and i == 0:
                window = dict(req.query).get("window", "all")
                cols = TRACK_COLUMNS.replace("t.like_count,", "c.likers AS like_count,")
                where = _LIKER_SHOWN + (
                    "" if window == "all" else " AND LEAST(l.created_at, l.indexed_at) >= now() - $2::interval"
                )
                sql = _NAIVE_TOP.format(cols=cols, where=where, tracks=TRACKS)
                args = (51,) if window == "all" else (51, WINDOWS[window])
            else:
                sql = sql.replace(TRACK_COLUMNS, NAIVE_TRACK_COLUMNS).replace(ARTIST_COLUMNS, NAIVE_ARTIST_COLUMNS)
            new.append((method, sql, args))
        out.append(new)
    return out


# --- the mix ---------------------------------------------------------------------------------------


@dataclass
class Samples:
    """What requests are drawn from, read off the loaded database."""

    hot_tracks: list[str]
    tracks: list[str]
    artists: list[tuple[str, str]]
    albums: list[str]
    streams: list[tuple[str, str]]
    titles: list[str]
    list_names: list[str]
    cursors: list[str] = field(default_factory=list)
    searches: list[str] = field(default_factory=list)


async def sample(pool: asyncpg.Pool) -> Samples:
    """Visible tracks (the most liked and a uniform draw), artists, albums, names to search for."""
    async with pool.acquire() as conn, conn.transaction():
        # Setup, not a request: the draw over a million rows may take longer than the API's timeout.
        await conn.execute("SET LOCAL statement_timeout = 0")
        await conn.execute("SELECT setseed(0.42)")  # the same draw each run (over the same data)
        return await _sample(conn)


async def _sample(pool: asyncpg.Connection) -> Samples:
    shown = "JOIN artists a ON a.did = {0}.did AND a.active AND NOT a.local_takedown"
    hot = await pool.fetch(f"SELECT t.uri FROM tracks t {shown.format('t')} ORDER BY t.like_count DESC LIMIT 2000")
    some = await pool.fetch(
        f"SELECT t.uri, t.did, t.rkey, t.title, t.support_gate IS NULL AS open FROM tracks t"
        f" {shown.format('t')} ORDER BY random() LIMIT 20000"
    )
    people = await pool.fetch(
        f"SELECT x.did, x.handle FROM artists x {shown.format('x')} WHERE x.track_count > 0"
        " ORDER BY random() LIMIT 10000"
    )
    albums = await pool.fetch(
        f"SELECT l.uri, l.name, l.list_type FROM lists l {shown.format('l')} ORDER BY random() LIMIT 20000"
    )
    return Samples(
        hot_tracks=[r["uri"] for r in hot],
        tracks=[r["uri"] for r in some],
        artists=[(r["did"], r["handle"]) for r in people],
        albums=[r["uri"] for r in albums if r["list_type"] == "album"],
        streams=[(r["did"], r["rkey"]) for r in some if r["open"]],
        titles=[r["title"] for r in some],
        list_names=[r["name"] for r in albums],
    )


def search_term(rng: random.Random, s: Samples) -> str:
    """A word of a title (common words come up as often as they occur), two words, a prefix, a name."""
    roll = rng.random()
    words = rng.choice(s.titles).split()
    if roll < 0.5:
        return rng.choice(words).lower()
    if roll < 0.7 and len(words) > 1:
        i = rng.randrange(len(words) - 1)
        return f"{words[i]} {words[i + 1]}".lower()
    if roll < 0.85:
        return rng.choice(words).lower()[:4]
    return rng.choice(s.artists)[1].split(".")[0] if rng.random() < 0.5 else rng.choice(s.list_names).lower()


SEARCHES = 500
_SEARCH_CDF = list(itertools.accumulate(1 / (r + 1) for r in range(SEARCHES)))


def make_request(rng: random.Random, kind: str, s: Samples) -> Req:
    """One request of ``kind``: popular things more often, as readers ask for them."""
    xrpc = "/xrpc/" + _NS
    if kind == "latest":
        cursor = rng.choice(s.cursors) if s.cursors and rng.random() < 0.4 else None
        return Req(kind, xrpc + "getLatestTracks", (("limit", "50"), *((("cursor", cursor),) if cursor else ())))
    if kind == "top":
        return Req(kind, xrpc + "getTopTracks", (("window", "all" if rng.random() < 0.6 else "week"),))
    if kind == "track":
        pool = s.hot_tracks if rng.random() < 0.3 else s.tracks
        return Req(kind, xrpc + "getTrack", (("uri", rng.choice(pool)),))
    if kind == "artist":
        did, handle = rng.choice(s.artists)
        return Req(kind, xrpc + "getArtist", (("actor", did if rng.random() < 0.5 else handle),))
    if kind == "album":
        return Req(kind, xrpc + "getList", (("uri", rng.choice(s.albums)),))
    if kind == "search":  # a few queries are asked far more often than the rest
        return Req(kind, xrpc + "search", (("q", rng.choices(s.searches, cum_weights=_SEARCH_CDF)[0]),))
    did, rkey = rng.choice(s.streams)
    return Req(kind, f"/stream/{did}/{rkey}")


def schedule(n: int, mix: dict[str, int], s: Samples, seed: int) -> list[Req]:
    """``n`` requests drawn from ``mix``."""
    rng = random.Random(seed)
    kinds, weights = list(mix), list(mix.values())
    return [make_request(rng, rng.choices(kinds, weights)[0], s) for _ in range(n)]


# --- the open-loop generator -----------------------------------------------------------------------


@dataclass
class Run:
    """What one path did with the schedule."""

    name: str
    rate: float
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    backlog: dict[str, int] = field(default_factory=dict)
    first_errors: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    cpu: str = ""
    slowest: dict[str, tuple[float, Req]] = field(default_factory=dict)


async def open_loop(
    name: str,
    reqs: Sequence[Req],
    rate: float,
    call: Callable[[Req], Awaitable[object]],
    drain: float,
    observe: Callable[[Req, float, float, object], None] | None = None,
) -> Run:
    """Send ``reqs`` at ``rate`` per second whatever the answers do; latency counts from the due time.
    ``observe`` gets (request, due time, latency, what ``call`` returned) of each answered request."""
    run = Run(name, rate)
    due: dict[asyncio.Task[None], tuple[Req, float]] = {}
    # The generator must not stall on its own: a full collection over the recorded plans takes tens of
    # milliseconds and would show up as server latency. What exists now is never collected.
    gc.collect()
    gc.freeze()

    async def one(req: Req, at: float) -> None:
        result: object = None
        try:
            result = await call(req)
        except Exception as err:  # an error is a result here, counted and shown
            result = err
            run.errors[req.kind] = run.errors.get(req.kind, 0) + 1
            if len(run.first_errors) < 5:
                run.first_errors.append(f"{req.kind} {req.url[:120]}: {type(err).__name__}: {str(err)[:200]}")
        latency = time.perf_counter() - at
        if observe is not None:
            observe(req, at, latency, result)
        run.latencies.setdefault(req.kind, []).append(latency)
        if latency > run.slowest.get(req.kind, (0.0, req))[0]:
            run.slowest[req.kind] = (latency, req)

    start = time.perf_counter() + 0.05
    for i, req in enumerate(reqs):
        at = start + i / rate
        if (wait := at - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        due[asyncio.create_task(one(req, at))] = (req, at)
    _, pending = await asyncio.wait(due, timeout=drain) if due else (set(), set())
    stop = time.perf_counter()
    for task in pending:
        task.cancel()
        req, at = due[task]
        run.backlog[req.kind] = run.backlog.get(req.kind, 0) + 1
        run.latencies.setdefault(req.kind, []).append(stop - at)  # at least this long
    await asyncio.gather(*pending, return_exceptions=True)
    done = [t for t in due if t not in pending]
    run.elapsed = max((stop if pending else time.perf_counter()) - start, len(reqs) / rate) if done else 0.0
    return run


class CpuMeter:
    """CPU seconds of this process, of the API process, and the machine's busy share, over a phase."""

    def __init__(self, api_pid: int | None = None) -> None:
        self.api_pid = api_pid
        self._start = self._read()

    def _read(self) -> tuple[float, float, float, float, float]:
        ticks = os.sysconf("SC_CLK_TCK")
        with open("/proc/stat") as f:
            cpu = [int(x) for x in f.readline().split()[1:]]
        idle, total = cpu[3] + cpu[4], sum(cpu[:8])
        me = os.times()
        api = 0.0
        if self.api_pid is not None:
            with open(f"/proc/{self.api_pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            api = (int(fields[11]) + int(fields[12])) / ticks
        return time.perf_counter(), me.user + me.system, api, idle / ticks, total / ticks

    def summary(self) -> str:
        end = self._read()
        wall, me, api, idle, total = (b - a for a, b in zip(self._start, end, strict=True))
        busy = 100 * (1 - idle / total) if total else 0.0
        api_part = f", API process {api / wall:.2f}" if self.api_pid is not None else ""
        return (
            f"cores used: bench process {me / wall:.2f}{api_part}; machine busy {busy:.0f}% of {os.cpu_count()} cores"
        )


# --- report ----------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile of sorted ``values``."""
    return values[max(0, math.ceil(q * len(values)) - 1)] if values else float("nan")


@dataclass(frozen=True, slots=True)
class Row:
    """A line of the table."""

    sent: int
    done: int
    rate: float
    p50: float
    p99: float
    max: float
    errors: int
    backlog: int


def summarize(run: Run, kind: str | None) -> Row:
    """The figures of one kind of ``run`` (all kinds when None), in milliseconds."""
    kinds = [kind] if kind is not None else list(run.latencies)
    lat = sorted(x * 1000 for k in kinds for x in run.latencies.get(k, []))
    backlog = sum(run.backlog.get(k, 0) for k in kinds)
    done = len(lat) - backlog
    return Row(
        sent=len(lat),
        done=done,
        rate=done / run.elapsed if run.elapsed else 0.0,
        p50=percentile(lat, 0.50),
        p99=percentile(lat, 0.99),
        max=lat[-1] if lat else float("nan"),
        errors=sum(run.errors.get(k, 0) for k in kinds),
        backlog=backlog,
    )


def _ms(value: float, lower_bound: bool) -> str:
    return ("≥" if lower_bound else "") + f"{value:.2f}"


def report(runs: Sequence[Run], kinds: Sequence[str], rate: float, skipped: str | None) -> None:
    """Print the table, the ratios and the verdict on the goals."""
    print(f"\n{'path':<7}{'kind':<8}{'sent':>8}{'done':>8}{'rate/s':>9}{'p50 ms':>11}{'p99 ms':>11}{'max ms':>11}"
          f"{'errors':>8}{'backlog':>9}")  # fmt: skip
    rows: dict[tuple[str, str], Row] = {}
    for run in runs:
        for kind in [*kinds, "all"]:
            row = rows[run.name, kind] = summarize(run, None if kind == "all" else kind)
            p50, p99, top = (_ms(v, row.backlog > 0) for v in (row.p50, row.p99, row.max))
            print(f"{run.name:<7}{kind:<8}{row.sent:>8}{row.done:>8}{row.rate:>9.1f}{p50:>11}{p99:>11}{top:>11}"
                  f"{row.errors:>8}{row.backlog:>9}")  # fmt: skip
        print(f"{'':<7}{run.cpu}")
        for line in run.first_errors:
            print(f"{'':<7}error: {line}")
    if skipped:
        print(f"stream: skipped ({skipped}); its share of the mix went to the other kinds")
    names = {r.name for r in runs}
    print()
    for kind in [*kinds, "all"]:
        parts = []
        if {"api", "floor"} <= names:
            parts.append(f"API p99 / floor p99 = {rows['api', kind].p99 / rows['floor', kind].p99:5.2f}")
        if {"api", "naive"} <= names:
            parts.append(f"naive p99 / API p99 = {rows['naive', kind].p99 / rows['api', kind].p99:7.1f}")
        behind = [name for name in ("api", "floor", "naive") if name in names and rows[name, kind].backlog]
        print(
            f"{kind:<8}"
            + "; ".join(parts)
            + (f"  (lower bounds only: {', '.join(behind)} fell behind)" if behind else "")
        )
    if "api" in names:
        api = rows["api", "all"]
        kept_up = api.backlog == 0 and api.rate >= 0.98 * rate
        verdict = "met" if api.p99 < 10 and kept_up else "NOT met"
        print(
            f"\ngoal p99 < 10 ms at {rate:,.0f} req/s: {verdict}"
            f" (p99 {api.p99:.2f} ms at {api.rate:,.0f} req/s, {api.errors} errors, {api.backlog} backlog)"
        )
        if "floor" in names:
            floor = rows["floor", "all"]
            ratio = api.p99 / floor.p99
            verdict = "met" if ratio <= 2 else "NOT met"
            if api.backlog or floor.backlog:
                verdict = "not measurable: " + ("the floor" if floor.backlog else "the API") + " fell behind the rate"
            print(f"goal API within 2x of the asyncpg floor (p99): {verdict} ({ratio:.2f}x)")


# --- the API process -------------------------------------------------------------------------------


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def api_process(
    dsn: str, workers: int, feed_cache: float | None = None
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """uvicorn serving the API in a subprocess (``feed_cache``: API_FEED_CACHE_SECONDS, None for the
    default); yields its base URL once /health answers."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PLYR_BENCH_API_DSN": dsn, "PLYR_BENCH_API_URL": base}
    if feed_cache is not None:
        env["PLYR_BENCH_API_FEED_CACHE"] = str(feed_cache)
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "bench.api_mix:serve_app", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--workers", str(workers), "--no-access-log", "--log-level", "warning"]
    proc = await asyncio.create_subprocess_exec(*cmd, env=env)
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                if proc.returncode is not None:
                    raise RuntimeError(f"the API exited with {proc.returncode}")
                try:
                    async with session.get(base + "/health") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("the API did not answer /health in 30 s")
        yield base, proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def serves_stream(dsn: str) -> bool:
    """Whether the app as ``create_app`` builds it now has the stream route."""
    app = create_app(dsn, settings("http://127.0.0.1"))
    return STREAM_ROUTE in app.openapi().get("paths", {})  # included routers are nested; the schema lists all


# --- the run ---------------------------------------------------------------------------------------


async def harvest_cursors(pool: asyncpg.Pool, api: ApiSettings, pages: int = 20) -> list[str]:
    """Cursors of the latest feed's pages 2.. as a reader paging through would get them."""
    out: list[str] = []
    query: tuple[tuple[str, str], ...] = (("limit", "50"),)
    for _ in range(pages):
        _, body = await record(pool, api, Req("latest", "/xrpc/" + _NS + "getLatestTracks", query), None)
        if "cursor" not in body:
            break
        out.append(body["cursor"])
        query = (("limit", "50"), ("cursor", body["cursor"]))
    return out


async def record_all(pool: asyncpg.Pool, api: ApiSettings, reqs: set[Req], stream: bool) -> dict[Req, Plan]:
    """Each distinct request's statements, through the API's own handlers (also checks they answer)."""
    plans: dict[Req, Plan] = {}
    gate = asyncio.Semaphore(8)

    async def one(req: Req, sources: Any) -> None:
        async with gate:
            plan, answer = await record(pool, api, req, sources)
        status = getattr(answer, "status_code", 200)
        if status != (307 if req.kind == "stream" else 200):
            raise RuntimeError(f"{req.url}: the handler answered {status}")
        plans[req] = plan

    if stream:
        from api.sources import open_sources

        async with open_sources(api) as sources:
            await asyncio.gather(*(one(r, sources) for r in reqs))
    else:
        await asyncio.gather(*(one(r, None) for r in reqs))
    return plans


async def explain(pool: asyncpg.Pool, run: Run, plans: dict[Req, Plan]) -> str:
    """EXPLAIN ANALYZE of each statement of the slowest request of each kind in ``run``."""
    out: list[str] = []
    for kind, (latency, req) in sorted(run.slowest.items()):
        out.append(f"=== {kind}: {latency * 1000:.1f} ms in the {run.name} run: {req.url}")
        await replay(pool, plans[req], explain=out)
    return "\n".join(out)


async def prewarm(dsn: str) -> None:
    """Read every table and index of the benchmark schema into the server's shared buffers."""
    t = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        blocks = await conn.fetchval(
            "SELECT sum(pg_prewarm(c.oid::regclass)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = $1 AND c.relkind IN ('r', 'i', 'm')",
            SCHEMA,
        )
    finally:
        await conn.close()
    print(f"prewarmed {blocks * 8 / 1024:,.0f} MB into shared buffers in {time.perf_counter() - t:.0f} s")


async def main_async(args: argparse.Namespace, admin: str) -> str | None:
    """Load or reuse the database on ``admin``'s server, run the paths, print the table; the EXPLAIN
    text when asked."""
    sizes = Sizes(args.tracks, args.artists, args.likes, args.lists)
    built = None if args.reload else await cached(admin, sizes)
    if built is None:
        print(f"loading {sizes} into {database_url(admin).rsplit('/', 1)[1]} ...", flush=True)
        built = await load(admin, sizes, lambda line: print("  " + line, flush=True))
        print(f"loaded in {built:.0f} s")
    else:
        print(f"reusing the loaded database ({sizes}; it took {built:.0f} s to load)")
        if applied := await upgrade(admin):
            print(f"applied the migrations added since: {', '.join(applied)}")
    dsn = database_url(admin)
    api = settings("http://127.0.0.1")
    if args.server == "in-memory":
        await prewarm(dsn)
    mix, skipped = {k: v for k, v in {**MIX, **args.mix}.items() if v > 0}, None
    if "stream" in mix and not serves_stream(dsn):
        del mix["stream"]
        skipped = f"the app does not serve {STREAM_ROUTE} yet: api/app.py does not include api.stream's router"
    kinds = list(mix)
    # The ranking is the projector's job, not a request: it runs without the API's statement timeout
    # (a month of likes takes longer than that while the copy's pages are still cold).
    async with asyncpg.create_pool(dsn, min_size=1, max_size=1) as plain:
        t = time.perf_counter()
        ranked = await refresh_top_tracks(plain, SCHEMA)
        print(f"top_tracks refreshed in {time.perf_counter() - t:.1f} s: {ranked}")
        # The search vocabulary, once per loaded database (the API's own refresh is off in a run).
        t = time.perf_counter()
        async with plain.acquire() as conn:
            if await rebuild(conn, SCHEMA, unless_newer_than=math.inf):
                print(f"search vocabulary built in {time.perf_counter() - t:.1f} s")
    async with open_pool(dsn, api) as pool:
        samples = await sample(pool)
        samples.cursors = await harvest_cursors(pool, api)
        rng = random.Random(3)
        samples.searches = [search_term(rng, samples) for _ in range(SEARCHES)]
        reqs = schedule(int(args.rate * args.seconds), mix, samples, seed=1)
        warm = schedule(int(args.rate * 2), mix, samples, seed=2)
        t = time.perf_counter()
        plans = await record_all(pool, api, set(reqs) | set(warm), "stream" in mix)
        print(f"recorded the statements of {len(plans):,} distinct requests in {time.perf_counter() - t:.0f} s")
    runs = []
    if "api" in args.paths:
        runs.append(await api_path("api", dsn, args, reqs, warm))
    if "nocache" in args.paths:
        runs.append(await api_path("nocache", dsn, args, reqs, warm, feed_cache=0))
    if "floor" in args.paths:
        runs.append(await pool_path("floor", dsn, api, args, reqs, warm, plans))
    if "naive" in args.paths:
        naive = {r: naive_plan(r, plans[r]) for r in plans}
        runs.append(await pool_path("naive", dsn, api, args, reqs, [], naive))
    print(f"\n{len(reqs):,} requests over {args.seconds} s at {args.rate:,.0f}/s; mix {mix}")
    report(runs, kinds, args.rate, skipped)
    if not (args.explain and runs):
        return None
    async with open_pool(dsn, api) as pool:
        text = await explain(pool, runs[0], plans)
    print(f"\nEXPLAIN ANALYZE of the slowest {runs[0].name} request of each kind: {args.explain}")
    return text


async def api_path(
    name: str, dsn: str, args: argparse.Namespace, reqs: list[Req], warm: list[Req], feed_cache: float | None = None
) -> Run:
    """The mix over HTTP against the API in its own process (``feed_cache`` 0: feed pages not kept)."""
    async with (
        api_process(dsn, args.workers, feed_cache) as (base, proc),
        aiohttp.ClientSession(base, connector=aiohttp.TCPConnector(limit=args.connections)) as session,
    ):

        async def call(req: Req) -> None:
            stream = req.kind == "stream"
            async with session.request("HEAD" if stream else "GET", req.url, allow_redirects=False) as resp:
                body = await resp.read()
                if resp.status != (307 if stream else 200):
                    raise RuntimeError(f"HTTP {resp.status} {body[:200]!r}")

        await open_loop("warmup", warm, args.rate, call, args.drain)
        meter = CpuMeter(proc.pid if args.workers == 1 else None)
        run = await open_loop(name, reqs, args.rate, call, args.drain)
        run.cpu = meter.summary()
        return run


async def pool_path(
    name: str,
    dsn: str,
    api: ApiSettings,
    args: argparse.Namespace,
    reqs: list[Req],
    warm: list[Req],
    plans: dict[Req, Plan],
) -> Run:
    """The mix as recorded statements straight through asyncpg."""
    pool = await open_pool(dsn, api)
    try:
        if warm:
            await open_loop("warmup", warm, args.rate, lambda r: replay(pool, plans[r]), args.drain)
        meter = CpuMeter()
        run = await open_loop(name, reqs, args.rate, lambda r: replay(pool, plans[r]), args.drain)
        run.cpu = meter.summary()
        return run
    finally:
        pool.terminate()  # a naive run may leave statements behind; do not wait for them


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tracks", type=int, default=1_000_000)
    p.add_argument("--artists", type=int, default=100_000)
    p.add_argument("--likes", type=int, default=5_000_000)
    p.add_argument("--lists", type=int, default=200_000)
    p.add_argument("--rate", type=float, default=1000.0, help="requests per second")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (plyr-index serve runs 1)")
    p.add_argument("--connections", type=int, default=64, help="HTTP keep-alive connections of the generator")
    p.add_argument("--drain", type=float, default=10.0, help="seconds to wait for answers after the last send")
    p.add_argument(
        "--paths",
        default="api,floor,naive",
        help="which of api,nocache (the API with its feed cache off),floor,naive to run",
    )
    p.add_argument("--mix", default="", help=f"weights to change, e.g. search=0,track=30 (default {MIX})")
    p.add_argument("--reload", action="store_true", help="load the database again even if cached")
    p.add_argument(
        "--server",
        choices=("local", "in-memory"),
        default="local",
        help="the Postgres at PLYR_BENCH_PG, or an embedded one holding the database in shared buffers",
    )
    p.add_argument("--explain", metavar="FILE", help="write EXPLAIN ANALYZE of the slowest request of each kind")
    args = p.parse_args()
    configure("WARNING", "json")  # the handlers called here log like the API does; only warnings matter
    args.paths = set(args.paths.split(","))
    args.mix = {k: int(v) for k, v in (part.split("=") for part in args.mix.split(",") if part)}
    if set(args.mix) - set(MIX):
        p.error(f"--mix: kinds are {', '.join(MIX)}")
    if args.server == "local":
        plans = uvloop.run(main_async(args, ADMIN))
    else:
        with running_embedded(IN_MEMORY_DIR, IN_MEMORY_DIR.with_suffix(".log"), IN_MEMORY) as embedded:
            print(f"server: embedded PostgreSQL 18 with {', '.join(f'{k}={v}' for k, v in IN_MEMORY.items())}")
            plans = uvloop.run(main_async(args, embedded.admin_url))
    if plans is not None:
        with open(args.explain, "w") as out:
            out.write(plans)
    return 0


if __name__ == "__main__":
    sys.exit(main())
