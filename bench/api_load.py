"""The read-API benchmark's data: a synthetic read model, bulk-loaded the way the projector would leave it.

Invariants, as ``projector/store.py`` and ``schemas/sql/read`` keep them:
- ``tracks.sort_at`` = LEAST(created_at, indexed_at); a few records are future-dated;
- ``tracks.like_count`` = distinct likers of the track whose repo is visible (each liker likes a track
  at most once here, and a hidden liker's like is stored but not counted);
- ``artists.track_count`` / ``total_duration`` / ``likes_received`` = count, summed duration and summed
  like counts of all the artist's tracks; ``lists.item_count`` = its items;
- about 2% of repos are inactive upstream and 1% taken down locally; 30% of repos are listeners only.
Popularity is Zipf-like (rank r gets ~1/r of the likes, at most a fifth of all repos), so top tracks
mean something; titles are words from a Zipf-ranked vocabulary, so trigram search has real work.

Rows are COPYed with the secondary indexes and constraints dropped, then those are rebuilt and the
tables vacuumed and analyzed. A marker table records the sizes, so a later run with the same sizes
reuses the database instead of loading it again.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import itertools
import os
import random
import time
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from schemas.migrate import migrate

# PLYR_BENCH_API_DB: another database to load or reuse (a copy made to try a schema change on).
DATABASE = os.environ.get("PLYR_BENCH_API_DB", "plyr_bench_api")
SCHEMA = "bench_read"
CDN_ORIGIN = "https://cdn.plyr.test"
_TABLES = ("artists", "tracks", "tracks_by_likes", "likes", "lists", "list_items")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY_US = 86_400_000_000
_SPAN_DAYS = 730
_S32 = "234567abcdefghijklmnopqrstuvwxyz"
_REAL_WORDS = (  # the common ones, most common first
    "love night blue heart fire dream light rain summer midnight river gold home wild city moon sun girl boy"
    " baby time dance road shadow song star ocean golden sweet lost young forever broken silver electric echo"
    " ghost heaven angel devil storm winter spring autumn morning evening glass paper honey velvet neon rose"
    " garden window mirror highway desert island mountain valley thunder lightning whisper silence memory"
    " tomorrow yesterday paradise kingdom empire crown queen king soldier stranger lover friend sister brother"
    " mother father child saint sinner fever sugar candy cherry lemon orange violet crimson scarlet ivory"
    " black white green yellow purple coastline harbor lantern candle ember ashes smoke dust satellite rocket"
    " planet galaxy comet orbit signal static radio cassette vinyl tape machine engine motor runaway outlaw"
    " cowboy sailor pilot dreamer wanderer hunter prayer hymn lullaby anthem ballad serenade requiem"
)
_SYLLABLES = "ka ri to mel sun va lo den mi ra zo fen tal qui bre nor sa ly ko thu an el"
_FILE_TYPES = ("mp3", "mp3", "mp3", "flac", "wav", "m4a")
_STATUSES = ("deactivated", "takendown", "suspended")


@dataclass(frozen=True, slots=True)
class Sizes:
    """How big the read model is."""

    tracks: int
    artists: int
    likes: int
    lists: int


def tid(micros: int, clock: int) -> str:
    """A TID: 53 bits of microseconds then 10 bits of clock id, base32-sortable."""
    value = (micros << 10) | (clock & 0x3FF)
    return "".join(_S32[(value >> (5 * i)) & 31] for i in range(12, -1, -1))


def cid_of(key: str) -> str:
    """A CIDv1 dag-cbor sha-256 look-alike, stable for ``key``."""
    digest = hashlib.blake2b(key.encode(), digest_size=32).digest()
    return "bafyrei" + base64.b32encode(digest).decode().lower().rstrip("=")[:52]


def did_of(i: int) -> str:
    """A did:plc of 24 base32 characters for repo number ``i``."""
    return "did:plc:" + "".join(_S32[(i * 2654435761 >> (5 * k)) & 31] for k in range(12)) + tid(i, 0)[1:]


def _when(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _zipf_cdf(n: int, s: float, offset: float = 1.0) -> list[float]:
    return list(itertools.accumulate(1.0 / (r + offset) ** s for r in range(n)))


def _pick(rng: random.Random, cdf: Sequence[float]) -> int:
    return min(bisect.bisect_left(cdf, rng.random() * cdf[-1]), len(cdf) - 1)


def vocabulary(rng: random.Random, size: int = 3000) -> list[str]:
    """Real words first (the common ones), then made-up words of two or three syllables."""
    words = _REAL_WORDS.split()
    syllables = _SYLLABLES.split()
    seen = set(words)
    while len(words) < size:
        word = "".join(rng.choice(syllables) for _ in range(rng.choice((2, 2, 3))))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


class Dataset:
    """Every row of the read model, generated from a seed; kept compact (arrays), rows built on demand."""

    def __init__(self, sizes: Sizes, seed: int = 7) -> None:
        rng = self._rng = random.Random(seed)
        self.sizes = sizes
        self.now_us = int(time.time() * 1_000_000)
        self.words = vocabulary(rng)
        self._word_cdf = _zipf_cdf(len(self.words), 1.0, offset=5.0)
        n_a, n_t = sizes.artists, sizes.tracks
        self.dids = [did_of(i) for i in range(n_a)]
        hidden = self.hidden = bytearray(n_a)
        self.inactive = bytearray(n_a)
        self.takedown = bytearray(n_a)
        for i in range(n_a):
            roll = rng.random()
            if roll < 0.02:
                self.inactive[i] = hidden[i] = 1
            elif roll < 0.03:
                self.takedown[i] = hidden[i] = 1
        uploaders = rng.sample(range(n_a), max(1, int(n_a * 0.7)))
        uploader_cdf = _zipf_cdf(len(uploaders), 0.8, offset=5.0)
        # Tracks in the order they were indexed (the heap order of a live table), newest last.
        ages = sorted((_SPAN_DAYS * _DAY_US * rng.random() ** 1.5 for _ in range(n_t)), reverse=True)
        self.t_artist = array("i", (uploaders[_pick(rng, uploader_cdf)] for _ in range(n_t)))
        self.t_indexed = array("q", (self.now_us - int(a) for a in ages))
        self.t_created = array("q", self.t_indexed)
        for t in range(n_t):
            if rng.random() < 0.002:  # future-dated createdAt: sorts by when it was indexed
                self.t_created[t] += rng.randrange(_DAY_US // 12, 30 * _DAY_US)
            else:
                self.t_created[t] -= rng.randrange(50_000, 5_000_000)
        self.t_duration = array("i", (rng.randrange(60, 480) for _ in range(n_t)))
        self.t_uri = [
            f"at://{self.dids[self.t_artist[t]]}/fm.plyr.track/{tid(self.t_created[t], t)}" for t in range(n_t)
        ]
        self.t_cid = [cid_of(u) for u in self.t_uri]
        self.t_title = [self.phrase(rng.choice((1, 2, 2, 3, 3, 4))) for _ in range(n_t)]
        self.t_album: list[str | None] = [None] * n_t
        self._likes(rng)
        self._lists(rng)

    def phrase(self, words: int) -> str:
        """``words`` Zipf-drawn words, title-cased."""
        return " ".join(self.words[_pick(self._rng, self._word_cdf)].capitalize() for _ in range(words))

    def sort_at(self, t: int) -> int:
        """LEAST(created_at, indexed_at) of track ``t``, in microseconds."""
        return min(self.t_created[t], self.t_indexed[t])

    def _likes(self, rng: random.Random) -> None:
        n_t, n_a, total = self.sizes.tracks, self.sizes.artists, self.sizes.likes
        cap = max(1, n_a // 5)
        weights = [1.0 / (r + 1) for r in range(n_t)]
        counts = [0.0] * n_t
        free, budget = list(range(n_t)), float(total)
        for _ in range(4):  # scale the uncapped ranks up to spend what the capped ones could not take
            scale = budget / sum(weights[r] for r in free)
            still = []
            for r in free:
                counts[r] = min(float(cap), weights[r] * scale)
                if counts[r] < cap:
                    still.append(r)
            budget = total - sum(counts)
            free = still
        ints = [min(cap, int(c) + (rng.random() < c - int(c))) for c in counts]
        diff, r = total - sum(ints), 0
        while diff != 0:  # settle rounding on the top uncapped ranks so the total is exact
            step = 1 if diff > 0 else -1
            if (step > 0 and ints[r] < cap) or (step < 0 and ints[r] > 0):
                ints[r] += step
                diff -= step
            r = (r + 1) % n_t
        by_rank = list(range(n_t))
        rng.shuffle(by_rank)
        self.like_count = array("i", bytes(4 * n_t))
        self.l_track, self.l_liker, self.l_micros = array("i"), array("i"), array("q")
        buckets: list[list[int]] = [[] for _ in range(_SPAN_DAYS + 31)]
        for rank, t in enumerate(by_rank):
            start = self.sort_at(t)
            for liker in rng.sample(range(n_a), ints[rank]):
                at = start + int((self.now_us - start) * rng.random())
                buckets[min(len(buckets) - 1, max(0, (self.now_us - at) // _DAY_US))].append(len(self.l_track))
                self.l_track.append(t)
                self.l_liker.append(liker)
                self.l_micros.append(at)
                if not self.hidden[liker]:
                    self.like_count[t] += 1
        # Heap order of likes = arrival order: oldest day first, shuffled within a day.
        self.like_order = array("i")
        for bucket in reversed(buckets):
            rng.shuffle(bucket)
            self.like_order.extend(bucket)

    def _lists(self, rng: random.Random) -> None:
        by_artist: dict[int, list[int]] = {}
        for t, a in enumerate(self.t_artist):
            by_artist.setdefault(a, []).append(t)
        max_albums = self.sizes.lists // 2
        self.albums: list[tuple[int, str, list[int]]] = []  # (artist, name, tracks)
        for a, tracks in by_artist.items():
            i = 0
            while i < len(tracks) and len(self.albums) < max_albums:
                if len(tracks) - i >= 3 and rng.random() < 0.25:
                    size = min(len(tracks) - i, rng.randrange(4, 13))
                    name = self.phrase(rng.choice((1, 2, 2, 3)))
                    chosen = tracks[i : i + size]
                    for t in chosen:
                        self.t_album[t] = name
                    self.albums.append((a, name, chosen))
                    i += size
                else:
                    i += 1
        rank_cdf = _zipf_cdf(self.sizes.tracks, 0.9, offset=10.0)
        by_popularity = sorted(range(self.sizes.tracks), key=lambda t: -self.like_count[t])
        self.playlists: list[tuple[int, str, list[int]]] = []
        for _ in range(self.sizes.lists - len(self.albums)):
            items = [by_popularity[_pick(rng, rank_cdf)] for _ in range(rng.randrange(3, 26))]
            self.playlists.append((rng.randrange(self.sizes.artists), self.phrase(rng.choice((1, 2, 3))), items))

    def artist_rows(self) -> Iterator[tuple[Any, ...]]:
        """Rows of ``artists``."""
        n_a = self.sizes.artists
        count, duration, received = [0] * n_a, [0] * n_a, [0] * n_a
        first = [self.now_us - self._rng.randrange(_SPAN_DAYS * _DAY_US) for _ in range(n_a)]
        for t, a in enumerate(self.t_artist):
            count[a] += 1
            duration[a] += self.t_duration[t]
            received[a] += self.like_count[t]
            first[a] = min(first[a], self.t_indexed[t])
        for a in range(n_a):
            handle = f"{self.words[(a * 7919) % len(self.words)]}{a}.plyr.test"
            status = _STATUSES[a % 3] if self.inactive[a] else None
            avatar = f"{CDN_ORIGIN}/avatar/{a}.jpg" if a % 3 else None
            seen = _when(first[a])
            yield (
                self.dids[a], handle, f"bio of {handle}" if a % 2 else None, avatar, seen,
                not self.inactive[a], status, bool(self.takedown[a]), count[a], received[a], duration[a], seen, seen,
                True, None,  # handle_valid (ingest verified the handle), pds (unknown until a DID document)
            )  # fmt: skip

    def track_rows(self) -> Iterator[tuple[Any, ...]]:
        """Rows of ``tracks``."""
        rng = random.Random(11)
        for t in range(self.sizes.tracks):
            did, uri = self.dids[self.t_artist[t]], self.t_uri[t]
            rkey = uri.rsplit("/", 1)[1]
            features: list[dict[str, str]] = []
            if rng.random() < 0.03:
                features = [{"did": self.dids[rng.randrange(self.sizes.artists)]} for _ in range(rng.choice((1, 2)))]
            file_type = rng.choice(_FILE_TYPES)
            gate = '{"type": "any"}' if rng.random() < 0.01 else None
            yield (
                uri, did, rkey, self.t_cid[t], self.t_title[t], self.words[self.t_artist[t] % 150].capitalize(),
                self.t_album[t], self.t_duration[t], file_type, f"{CDN_ORIGIN}/audio/{did}/{rkey}.{file_type}",
                cid_of("blob" + uri), f"audio/{'mpeg' if file_type == 'mp3' else file_type}",
                self.t_duration[t] * 40_000, f"{CDN_ORIGIN}/art/{rkey}.jpg", _json_list(features),
                [f["did"] for f in features], None, None, gate, _when(self.t_created[t]),
                _when(self.t_indexed[t]), _when(self.sort_at(t)), self.like_count[t], 0,
            )  # fmt: skip

    def like_rows(self) -> Iterator[tuple[Any, ...]]:
        """Rows of ``likes``, in arrival order."""
        for i in self.like_order:
            t, liker, at = self.l_track[i], self.l_liker[i], self.l_micros[i]
            uri = f"at://{self.dids[liker]}/fm.plyr.like/{tid(at, i)}"
            yield (uri, self.dids[liker], self.t_uri[t], self.t_cid[t], _when(at), _when(at + 300_000 + i % 900_000))

    def _all_lists(self) -> Iterator[tuple[str, int, str, list[int], str]]:
        for n, (a, name, items) in enumerate(self.albums):
            yield f"at://{self.dids[a]}/fm.plyr.list/{tid(self.t_created[items[0]], n)}", a, name, items, "album"
        for n, (a, name, items) in enumerate(self.playlists):
            micros = self.now_us - (n * 7919 % (_SPAN_DAYS * _DAY_US))
            yield f"at://{self.dids[a]}/fm.plyr.list/{tid(micros, n)}", a, name, items, "playlist"

    def list_rows(self) -> Iterator[tuple[Any, ...]]:
        """Rows of ``lists``."""
        for uri, a, name, items, kind in self._all_lists():
            created = _when(int(tid_micros(uri.rsplit("/", 1)[1])))
            yield (
                uri,
                self.dids[a],
                uri.rsplit("/", 1)[1],
                cid_of(uri),
                name,
                kind,
                len(items),
                created,
                None,
                created,
            )

    def item_rows(self) -> Iterator[tuple[Any, ...]]:
        """Rows of ``list_items``."""
        for uri, _, _, items, _ in self._all_lists():
            for position, t in enumerate(items):
                yield (uri, position, self.t_uri[t], self.t_cid[t])


def tid_micros(rkey: str) -> int:
    """The microseconds of a TID."""
    value = 0
    for ch in rkey:
        value = value * 32 + _S32.index(ch)
    return value >> 10


def _json_list(items: list[dict[str, str]]) -> str:
    return "[" + ", ".join(f'{{"did": "{i["did"]}"}}' for i in items) + "]"


async def cached(admin_dsn: str, sizes: Sizes) -> float | None:
    """Seconds the cached database took to load, if it holds exactly ``sizes``; else None."""
    try:
        conn = await asyncpg.connect(database_url(admin_dsn))
    except asyncpg.InvalidCatalogNameError:
        return None
    try:
        row = await conn.fetchrow(
            f"SELECT load_seconds FROM {SCHEMA}.bench_marker WHERE tracks = $1 AND artists = $2 AND likes = $3"
            " AND lists = $4",
            sizes.tracks,
            sizes.artists,
            sizes.likes,
            sizes.lists,
        )
    except asyncpg.UndefinedTableError:
        return None
    finally:
        await conn.close()
    return None if row is None else float(row["load_seconds"])


async def upgrade(admin_dsn: str) -> list[str]:
    """Apply to the cached database the read-model migrations added since it was loaded (then ANALYZE)."""
    conn = await asyncpg.connect(database_url(admin_dsn))
    try:
        await conn.execute("SET maintenance_work_mem = '1GB'")
        applied = await migrate(conn, "read", SCHEMA)
        for table in _TABLES if applied else ():
            await conn.execute(f"ANALYZE {SCHEMA}.{table}")
        return applied
    finally:
        await conn.close()


def database_url(admin_dsn: str) -> str:
    """The benchmark database on the server of ``admin_dsn``."""
    return admin_dsn.rsplit("/", 1)[0] + "/" + DATABASE


async def load(admin_dsn: str, sizes: Sizes, say: Any) -> float:
    """Drop and recreate the database, generate and COPY every table, rebuild indexes; return seconds."""
    start = time.perf_counter()
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {DATABASE}")
    finally:
        await admin.close()
    conn = await asyncpg.connect(database_url(admin_dsn), server_settings={"search_path": f"{SCHEMA}, public"})
    try:
        await migrate(conn, "read", SCHEMA)
        await conn.execute("SET maintenance_work_mem = '1GB'; SET synchronous_commit = off")
        indexes, constraints = await _drop_indexes(conn)
        data = Dataset(sizes)
        say(f"generated the model in {time.perf_counter() - start:.0f} s")
        for table, rows in (
            ("artists", data.artist_rows()),
            ("tracks", data.track_rows()),
            ("likes", data.like_rows()),
            ("lists", data.list_rows()),
            ("list_items", data.item_rows()),
        ):
            columns = [r["attname"] for r in await conn.fetch(_COLUMNS, f"{SCHEMA}.{table}")]
            t = time.perf_counter()
            await conn.copy_records_to_table(table, records=rows, columns=columns, schema_name=SCHEMA)
            say(f"copied {table} in {time.perf_counter() - t:.0f} s")
        await conn.execute("INSERT INTO tracks_by_likes (uri, like_count) SELECT uri, like_count FROM tracks")
        t = time.perf_counter()
        for sql in [*indexes, *constraints]:
            await conn.execute(sql)
        say(f"built {len(indexes) + len(constraints)} indexes and constraints in {time.perf_counter() - t:.0f} s")
        for table in _TABLES:
            await conn.execute(f"VACUUM (ANALYZE) {SCHEMA}.{table}")
        seconds = time.perf_counter() - start
        await conn.execute(
            f"CREATE TABLE {SCHEMA}.bench_marker (tracks int, artists int, likes int, lists int,"
            " load_seconds float8, loaded_at timestamptz DEFAULT now())"
        )
        await conn.execute(
            f"INSERT INTO {SCHEMA}.bench_marker VALUES ($1, $2, $3, $4, $5)",
            sizes.tracks,
            sizes.artists,
            sizes.likes,
            sizes.lists,
            seconds,
        )
        return seconds
    finally:
        await conn.close()


_COLUMNS = (
    "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped"
    " AND attgenerated = '' ORDER BY attnum"
)


async def _drop_indexes(conn: asyncpg.Connection) -> tuple[list[str], list[str]]:
    """Drop the loaded tables' indexes and keys; return the statements that put them back."""
    tables = [f"{SCHEMA}.{t}" for t in _TABLES]
    indexes = await conn.fetch(
        "SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def FROM pg_index i"
        " WHERE i.indrelid = ANY($1::regclass[])"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)",
        tables,
    )
    keys = await conn.fetch(
        "SELECT conrelid::regclass::text AS tab, conname, pg_get_constraintdef(oid) AS def, contype::text AS contype"
        " FROM pg_constraint"
        " WHERE conrelid = ANY($1::regclass[]) AND contype IN ('p', 'u', 'f') ORDER BY contype = 'f', conname",
        tables,
    )
    for k in sorted(keys, key=lambda k: k["contype"] != "f"):  # foreign keys go first
        await conn.execute(f'ALTER TABLE {k["tab"]} DROP CONSTRAINT "{k["conname"]}"')
    for i in indexes:
        await conn.execute(f"DROP INDEX {i['name']}")
    return [i["def"] for i in indexes], [
        f'ALTER TABLE {k["tab"]} ADD CONSTRAINT "{k["conname"]}" {k["def"]}' for k in keys
    ]
