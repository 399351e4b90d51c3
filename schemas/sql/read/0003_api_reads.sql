-- What the read API needs beyond the records themselves: search, top tracks, the activity feed and the
-- live change stream. The projector maintains all of it; the API only reads.

-- pg_trgm lives in public (an extension is per database, and each read-model schema, live or being
-- replayed, shares it); the read paths run with search_path "<schema>, public".
CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public;

-- Search text is compared case-folded, with typographic quotes and dashes made plain, so "Don’t"
-- finds "don't". IMMUTABLE so it can back an index; the API calls the same function on the query.
CREATE FUNCTION search_norm(t text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    RETURN lower(translate(t, '‘’‚‛“”„‟–—', '''''''''""""--'));

CREATE INDEX tracks_search ON tracks USING gin (search_norm(title) public.gin_trgm_ops);
CREATE INDEX tracks_search_artist ON tracks USING gin (search_norm(artist) public.gin_trgm_ops);
CREATE INDEX artists_search ON artists USING gin (search_norm(handle) public.gin_trgm_ops);
CREATE INDEX lists_search ON lists USING gin (search_norm(name) public.gin_trgm_ops);

-- Top tracks of all time read straight off the maintained like counts.
CREATE INDEX tracks_top ON tracks (like_count DESC, uri DESC);
CREATE INDEX tracks_by_album ON tracks (did, album, sort_at DESC, uri DESC);

-- Likes in a window: by their sort time (the earlier of createdAt and indexedAt, as for tracks).
CREATE INDEX likes_recent ON likes (LEAST(created_at, indexed_at));

-- Top tracks by distinct likers within a rolling window ('day', 'week', 'month'), ranked by the
-- projector on a timer and replaced whole per window in one transaction, so a reader sees one ranking.
CREATE TABLE top_tracks (
    time_window text NOT NULL CHECK (time_window IN ('day', 'week', 'month')),
    rank        integer NOT NULL,
    uri         text NOT NULL,
    likers      integer NOT NULL,
    computed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (time_window, rank)
);

-- Every change the projector applies, in commit order: the live event stream resumes from a seq, and
-- the activity feed is the subset of kinds a person would call activity. Rows are appended under a
-- transaction-scoped advisory lock taken just before commit, so seq order is commit order even with
-- several projectors: a reader that saw seq N never later finds a committed row below N.
CREATE TABLE changes (
    seq          bigserial PRIMARY KEY,
    -- track.created | track.updated | track.deleted | like.created | like.deleted
    -- comment.created | comment.updated | comment.deleted | list.created | list.updated
    -- list.deleted | list.item_added | profile.updated | account.status
    kind         text NOT NULL,
    did          text NOT NULL,
    uri          text,
    -- the track a like/comment/list item points at
    subject_uri  text,
    -- list_type for lists, status for accounts, ...
    detail       jsonb,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX changes_by_did ON changes (did, seq DESC);
CREATE INDEX changes_activity ON changes (seq DESC)
    WHERE kind IN ('track.created', 'like.created', 'comment.created', 'list.created', 'list.item_added');
