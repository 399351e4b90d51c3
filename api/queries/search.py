"""Search over tracks, artists, albums and playlists with pg_trgm.

Text is compared through the read models' ``search_norm`` (case folded, typographic quotes plain), the
same function the indexes are built on. Ranking: exact, then prefix, then substring, then fuzzy
(trigram similarity to the query over the threshold); within a class by similarity, then kind and key,
so pages are stable and a cursor on (class, similarity, kind, key) never skips or repeats. Each class of
each kind is at most the first ``_CANDIDATES`` matches: exact, prefix and substring in (normalized text,
key) order, which bounds a query's cost.

Fuzzy candidates are not found by comparing the query with every title (pg_trgm's similarity scan
read every posting list of the query's trigrams: 45-136 ms over a million titles). The query's words
are respelt against the vocabulary (api/search_words.py: words one typo away share a deletion key, a
btree look-up), reordered and shortened (api/spelling.py), and the best such phrases are read, each
with the first titles it begins, from the ordered index, keeping those similar enough to the query as
typed. A title similar to the query is made of its words or their near spellings, so little is lost:
titles holding only part of the query among other words, or words two typos away.

Classes are read one statement at a time and only as far as the page needs: a common word fills a
page with exact or prefix matches from an ordered btree walk and never builds the trigram bitmap. The
substring class of a one-word query is the one statement whose plan Postgres picks per query (a
custom plan, never a cached generic one): a walk of the ordered index that stops at the limit for text
many titles contain, the trigram bitmap for rare text. Both give the same rows, since the order is the
same. A query of several words reads its substring candidates through the trigrams of its words alone,
always as a bitmap (``_words_pattern``); every other statement runs its cached generic plan.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from fastapi import APIRouter, Request

from api import spelling, views
from api.cursor import Int32, decode
from api.errors import InvalidRequest
from api.queries.common import Ctx, ctx, page, track_views, with_cursor
from api.sql import ARTIST_COLUMNS, LIST_COLUMNS, LISTS, TRACK_COLUMNS, TRACKS
from api.xrpc import SEARCH_ANSWERS, Params, add_query

_MATCH = ("exact", "prefix", "substring", "fuzzy")
_SUBSTRING = _MATCH.index("substring")
_FUZZY_CLASS = _MATCH.index("fuzzy")
# Straight and typographic quotes (left/right single and double).
_QUOTES = "\"'\u2018\u2019\u201c\u201d"


def normalize_query(q: str) -> str:
    """NFKC, trimmed, surrounding quotes dropped; SQL folds case and quote styles further."""
    text = unicodedata.normalize("NFKC", q).strip()
    while len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    return text


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# How many candidates of each class each source ranks at most (in btree order), so a common word costs
# a bounded amount, not a visit to every title that contains it.
_CANDIDATES = 200
# Trigram similarity to the query as typed that a fuzzy match needs (pg_trgm's default, 0.3, would let
# through titles sharing one short word with it).
_FUZZY = 0.4
# Shorter queries have no trigram of their own: exact and prefix matches only.
_TRIGRAM_MIN = 3
# Fuzzy matching (api/spelling.py): each word of the query may be replaced by one of its _SPELLINGS
# most similar vocabulary words one typo away (api/search_words.py), and short queries' words reordered
# or left out; the _PHRASES phrases most similar to the query (at least _PHRASE_FLOOR: a title they
# begin may still reach _FUZZY) are looked up, each with the titles it begins.
_SPELLINGS = 3
_PHRASES = 48
_PHRASE_FLOOR = 0.3
# Index entries read per phrase: the phrase itself, then the titles it begins.
_PER_PHRASE = 20
# Words of a query beyond these are kept as typed.
_WORDS_CORRECTED = 8
_SPELLINGS_SQL = (
    "SELECT m.i, m.word, public.similarity(m.word, ($3::text[])[m.i])::float8 AS sim"
    " FROM (SELECT DISTINCT q.i, k.word FROM unnest($1::int[], $2::text[]) q (i, key)"
    " JOIN search_word_keys k ON k.key = q.key) m WHERE m.word <> ($3::text[])[m.i]"
)


def _source(kind: str, field: str, from_: str, key: str, extra: str = "") -> tuple[str, ...]:
    # $1 = search_norm(q), $2 = it escaped for LIKE, $3 = the first string above every prefix of $1.
    # "USING ~<~" is the byte order of the text_pattern_ops index, which a plain ORDER BY cannot use.
    n = f"search_norm({field})"
    head = f"SELECT '{kind}'::text AS kind, {key} AS key, {{klass}} AS class,"
    head += f" {{sim}}::float8 AS sim FROM {from_} WHERE {field} IS NOT NULL {extra} AND"
    sorted_ = f"ORDER BY {n} USING ~<~, {key} LIMIT {_CANDIDATES}"
    similarity = f"public.similarity({n}, $1)"
    not_prefix = f"NOT ({n} ~>=~ $1 AND {n} ~<~ $3)"
    return (
        # An exact match's text is the query's: its similarity is 1 (as similarity() gives for any text
        # with a trigram), so it is not computed for each of a common title's matches.
        f"({head.format(klass=0, sim=1)} {n} = $1 ORDER BY {key} LIMIT {_CANDIDATES})",
        # Strictly above $1: the walk starts past the exact matches instead of reading and dropping them
        # (thousands for a common one-word title).
        f"({head.format(klass=1, sim=similarity)} {n} ~>~ $1 AND {n} ~<~ $3 {sorted_})",
        f"({head.format(klass=2, sim=similarity)} {n} LIKE '%' || $2 || '%' AND {not_prefix} {sorted_})",
        # The substring class of a query of several words ($4 = _words_pattern): see _words_pattern.
        f"({head.format(klass=2, sim=similarity)} {n} LIKE $4 AND ({n} || '') LIKE '%' || $2 || '%'"
        f" AND {not_prefix} {sorted_})",
    )


def _fuzzy_source(kind: str, table: str, field: str, key: str, walk: str = "", shown: str = "") -> str:
    # $1 = search_norm(q), $2 = it escaped for LIKE, $3/$4 = each corrected phrase and the first string
    # above its prefixes. Per phrase, the first _PER_PHRASE entries of the ordered index from the phrase
    # on (the phrase itself first, then titles it begins), index-only; those similar enough to the query
    # as typed, and not already in the substring class, are then checked for visibility.
    alias = table.split()[1]
    n = f"search_norm({field})"
    return (
        f"(SELECT DISTINCT '{kind}'::text AS kind, m.key, 3 AS class, m.sim"
        " FROM unnest($3::text[], $4::text[]) p (lo, hi)"
        f" CROSS JOIN LATERAL (SELECT {key} AS key, {alias}.did, {n} AS norm FROM {table}"
        f" WHERE {field} IS NOT NULL {walk} AND {n} ~>=~ p.lo AND {n} ~<~ p.hi"
        f" ORDER BY {n} USING ~<~, {key} LIMIT {_PER_PHRASE}) w"
        f" CROSS JOIN LATERAL (SELECT w.key, public.similarity(w.norm, $1)::float8 AS sim) m {shown}"
        f" WHERE m.sim >= {_FUZZY} AND w.norm NOT LIKE '%' || $2 || '%')"
    )


# Where in each _source tuple the substring class of a query of several words is.
_BY_WORDS = 3


def _words_pattern(norm: str) -> str | None:
    """For a query of several words, a LIKE pattern of its words in order with anything between them
    ("blue salo" → "%blue%salo%"), which every text holding the query holds; None for one word, or
    when no word is long enough to have a trigram.

    The trigram index reads a posting list per trigram of the pattern, and the query's own pattern
    holds trigrams of its word boundaries ("ue ", " sa", "  s") that nearly every title shares: for
    two-word queries that was most of the substring class's time (a third to a half of it, over
    the benchmark's phrases). This pattern picks out the candidates by their words' own trigrams, and the
    query itself is checked on those rows. The check is written on an expression Postgres holds no
    statistics for, so it estimates those rows as few and always builds the bitmap: estimating the
    words alone as common, it had walked the whole ordered index for a rare phrase of common words
    (107 ms against 22 for the bitmap). The statement's plan therefore never depends on the text, and
    it runs the cached generic plan.
    """
    words = spelling.TRIGRAM_WORDS.findall(norm)
    if len(words) < 2 or max(len(w) for w in words) < _TRIGRAM_MIN:
        return None
    return "%" + "%".join(_like_escape(w) for w in words) + "%"


def _above_prefixes(text: str) -> str:
    """The least string greater than every string starting with ``text`` (code point order is UTF-8
    byte order, which text_pattern_ops compares)."""
    last = ord(text[-1])
    return text[:-1] + chr(last + 1) if last < 0x10FFFF else text + "\U0010ffff"


_SOURCES = {
    "track": _source("track", "t.title", TRACKS, "t.uri"),
    "artist": _source("artist", "a.handle", "artists a", "a.did", "AND a.active AND NOT a.local_takedown"),
    "album": _source("album", "l.name", LISTS, "l.uri", "AND l.list_type = 'album'"),
    "playlist": _source("playlist", "l.name", LISTS, "l.uri", "AND l.list_type = 'playlist'"),
}
_SHOWN = "JOIN artists v ON v.did = w.did AND v.active AND NOT v.local_takedown"
_FUZZY_SOURCES = {
    "track": _fuzzy_source("track", "tracks t", "t.title", "t.uri", shown=_SHOWN),
    "artist": _fuzzy_source("artist", "artists a", "a.handle", "a.did", "AND a.active AND NOT a.local_takedown"),
    "album": _fuzzy_source("album", "lists l", "l.name", "l.uri", "AND l.list_type = 'album'", _SHOWN),
    "playlist": _fuzzy_source("playlist", "lists l", "l.name", "l.uri", "AND l.list_type = 'playlist'", _SHOWN),
}


_NORMALIZE = (
    "SELECT search_norm($1) FROM set_config('enable_seqscan', 'off', true) s,"
    " set_config('plan_cache_mode', 'force_generic_plan', true) p"
)


async def _corrected(conn: Any, norm: str) -> list[str]:
    """The phrases to look up for ``norm``'s fuzzy class (api/spelling.py), best first."""
    asked = [w for w in dict.fromkeys(spelling.SEPARATORS.split(norm)[::2]) if len(w) >= spelling.KEYED_FROM]
    asked = asked[:_WORDS_CORRECTED]
    ids, keys = [], []
    for i, word in enumerate(asked, 1):
        for key in spelling.keys(word):
            ids.append(i)
            keys.append(key)
    found: dict[str, list[tuple[float, str]]] = {}
    for r in await conn.fetch(_SPELLINGS_SQL, ids, keys, asked) if asked else ():
        found.setdefault(asked[r["i"] - 1], []).append((r["sim"], r["word"]))
    spellings = {w: [x for _, x in sorted(found[w], key=lambda e: (-e[0], e[1]))[:_SPELLINGS]] for w in found}
    return [phrase for _, phrase in spelling.phrases(norm, spellings, _PHRASES, _PHRASE_FLOOR)]


async def _rows(c: Ctx, sql: str, by_kind: dict[str, list[str]], *kinds: str) -> list[Any]:
    """The rows of the page's keys of ``kinds`` (no round trip for kinds the page lacks)."""
    keys = [key for kind in kinds for key in by_kind.get(kind, [])]
    return list(await c.pool.fetch(sql, keys)) if keys else []


async def search(request: Request, p: Params) -> dict[str, Any]:
    q = normalize_query(p["q"])
    if not q:
        raise InvalidRequest("q is empty once quotes and spaces are removed")
    c = ctx(request)
    kinds = [p["type"]] if p["type"] is not None else list(_SOURCES)
    after = decode("search", p["cursor"], (Int32, float, str, str))
    first, resume = 0, None
    if after is not None:
        klass, sim, kind, key = after
        # decode checked the shape: (class, similarity, kind, key).
        assert isinstance(klass, int) and isinstance(sim, int | float)
        first, resume = klass, (-float(sim), kind, key)
    classes = 4 if len(q) >= _TRIGRAM_MIN else 2
    want = p["limit"] + 1
    rows: list[Any] = []
    async with c.pool.acquire() as conn, conn.transaction(readonly=True):
        # Every class must come from its index: a LIMIT tempts the planner into a sequential scan that
        # computes similarity for a million titles when matches turn out rare. The substring class of a
        # one-word query is planned per query (whether to walk the ordered index or build the trigram
        # bitmap depends on the text); the others always run their cached generic plans, whose shape
        # never depends on it.
        # Left to choose, Postgres planned the prefix class anew for every search (its generic cost,
        # with a range of unknown width, looks worse than any custom plan), 1-2 ms of planning each.
        # (both set in the same round trip as the query is normalized)
        norm = await conn.fetchval(_NORMALIZE, q)
        args = (norm, _like_escape(norm), _above_prefixes(norm))
        words = _words_pattern(norm)
        # Classes in rank order, each only if the page is not full yet (and none before the cursor's).
        for klass in range(first, classes):
            params: tuple[Any, ...] = args
            # Every parameter is named, so each is typed whichever class this statement reads.
            cond = "WHERE $2::text IS NOT NULL AND $3::text IS NOT NULL"
            if klass == _FUZZY_CLASS:
                phrases = await _corrected(conn, norm)
                if not phrases:
                    break
                union = " UNION ALL ".join(_FUZZY_SOURCES[k] for k in kinds)
                params, cond = (norm, args[1], phrases, [_above_prefixes(x) for x in phrases]), "WHERE true"
            elif klass == _SUBSTRING and words is not None:
                union = " UNION ALL ".join(_SOURCES[k][_BY_WORDS] for k in kinds)
                params = (*args, words)
            else:
                union = " UNION ALL ".join(_SOURCES[k][klass] for k in kinds)
            # The one statement whose best plan depends on the text: the substring class of one word.
            custom = klass == _SUBSTRING and words is None
            extra: tuple[Any, ...] = ()
            if resume is not None and klass == first:
                n = len(params) + 2
                cond += f" AND (-sim, kind, key) > (${n}, ${n + 1}, ${n + 2})"
                extra = resume
            if custom:
                await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            rows += await conn.fetch(
                f"SELECT * FROM ({union}) s {cond} ORDER BY sim DESC, kind, key LIMIT ${len(params) + 1}",
                *params,
                want - len(rows),
                *extra,
            )
            if custom:
                await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            if len(rows) >= want:
                break
    shown, cursor = page(rows, p["limit"], "search", lambda r: (r["class"], r["sim"], r["kind"], r["key"]))
    by_kind: dict[str, list[str]] = {}
    for r in shown:
        by_kind.setdefault(r["kind"], []).append(r["key"])
    track_rows = await _rows(c, f"SELECT {TRACK_COLUMNS} FROM {TRACKS} WHERE t.uri = ANY($1)", by_kind, "track")
    tracks = dict(zip((r["uri"] for r in track_rows), await track_views(c, track_rows), strict=True))
    artist_sql = f"SELECT {ARTIST_COLUMNS} FROM artists a WHERE a.did = ANY($1)"
    artists = {r["did"]: views.artist_view(r) for r in await _rows(c, artist_sql, by_kind, "artist")}
    list_sql = f"SELECT {LIST_COLUMNS} FROM {LISTS} WHERE l.uri = ANY($1)"
    lists = {r["uri"]: views.list_view(r) for r in await _rows(c, list_sql, by_kind, "album", "playlist")}
    results = []
    for r in shown:
        result: dict[str, Any] = {"type": r["kind"], "match": _MATCH[r["class"]]}
        if r["kind"] == "track" and r["key"] in tracks:
            result["track"] = tracks[r["key"]]
        elif r["kind"] == "artist" and r["key"] in artists:
            result["artist"] = artists[r["key"]]
        elif r["key"] in lists:
            result["list"] = lists[r["key"]]
        else:
            continue  # hidden between the two reads
        results.append(result)
    return with_cursor({"results": results}, cursor)


def register(router: APIRouter) -> None:
    """Serve search."""
    # Searches repeat (a few words make most of the traffic) and each costs Postgres far more than any
    # other query: a page is shared for API_SEARCH_CACHE_SECONDS, computed once at a time, and one
    # asked again is recomputed before it expires (api/cache.py).
    add_query(router, "fm.plyr.index.search", search, shared=SEARCH_ANSWERS, same=_same_search)


def _same_search(p: Params) -> Params:
    # Spellings normalize_query makes one (NFKC, spaces, quotes) share a page. Not case: SQL folds
    # case by its own rules (lower()), which Python's casefold does not always follow (ß).
    return {**p, "q": normalize_query(p["q"])}
