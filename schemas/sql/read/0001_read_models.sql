-- Read models of the projector. Applied into a schema given at migration time (search_path), so a
-- replay can build a fresh copy beside the live one and swap.

-- One row per record ever seen: ordering (rev) and tombstones are decided here for every collection.
CREATE TABLE records (
    did         text NOT NULL,
    collection  text NOT NULL,
    rkey        text NOT NULL,
    cid         text,
    rev         text NOT NULL,
    state       text NOT NULL CHECK (state IN ('live', 'deleted', 'invalid')),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (did, collection, rkey)
);

-- One row per repo the index knows of.
CREATE TABLE artists (
    did             text PRIMARY KEY,
    handle          text,
    bio             text,
    avatar          text,
    profile_created_at timestamptz,
    -- upstream account state (#account); active=false hides the repo's content
    active          boolean NOT NULL DEFAULT true,
    status          text,
    -- an operator's takedown; independent of upstream status and survives reactivation
    local_takedown  boolean NOT NULL DEFAULT false,
    track_count     integer NOT NULL DEFAULT 0,
    likes_received  integer NOT NULL DEFAULT 0,
    total_duration  bigint NOT NULL DEFAULT 0,
    indexed_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tracks (
    uri             text PRIMARY KEY,
    did             text NOT NULL,
    rkey            text NOT NULL,
    cid             text NOT NULL,
    title           text NOT NULL,
    artist          text NOT NULL,
    album           text,
    duration        integer,
    file_type       text NOT NULL,
    audio_url       text,
    audio_blob_cid  text,
    audio_blob_mime text,
    audio_blob_size bigint,
    image_url       text,
    features        jsonb NOT NULL DEFAULT '[]',
    feature_dids    text[] NOT NULL DEFAULT '{}',
    description     text,
    labels          jsonb,
    support_gate    jsonb,
    created_at      timestamptz NOT NULL,
    indexed_at      timestamptz NOT NULL DEFAULT now(),
    -- the earlier of createdAt and indexedAt: a future-dated record cannot jump a feed
    sort_at         timestamptz NOT NULL,
    like_count      integer NOT NULL DEFAULT 0,
    comment_count   integer NOT NULL DEFAULT 0
);
CREATE INDEX tracks_latest ON tracks (sort_at DESC, uri DESC);
CREATE INDEX tracks_by_artist ON tracks (did, sort_at DESC, uri DESC);

CREATE TABLE lists (
    uri         text PRIMARY KEY,
    did         text NOT NULL,
    rkey        text NOT NULL,
    cid         text NOT NULL,
    name        text,
    list_type   text,
    item_count  integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz,
    indexed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX lists_by_artist ON lists (did, list_type, created_at DESC, uri DESC);

-- Ordered items; the subject may not be indexed yet (it resolves when it arrives).
CREATE TABLE list_items (
    list_uri     text NOT NULL REFERENCES lists (uri) ON DELETE CASCADE,
    position     integer NOT NULL,
    subject_uri  text NOT NULL,
    subject_cid  text NOT NULL,
    PRIMARY KEY (list_uri, position)
);
CREATE INDEX list_items_subject ON list_items (subject_uri);

CREATE TABLE likes (
    uri          text PRIMARY KEY,
    did          text NOT NULL,
    subject_uri  text NOT NULL,
    subject_cid  text NOT NULL,
    created_at   timestamptz NOT NULL,
    indexed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX likes_by_subject ON likes (subject_uri, created_at DESC, uri DESC);
CREATE INDEX likes_by_liker ON likes (did, created_at DESC, uri DESC);

CREATE TABLE comments (
    uri           text PRIMARY KEY,
    did           text NOT NULL,
    subject_uri   text NOT NULL,
    subject_cid   text NOT NULL,
    text          text NOT NULL,
    timestamp_ms  bigint NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz,
    indexed_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX comments_by_subject ON comments (subject_uri, timestamp_ms, uri);

-- Records that failed validation (or envelopes that failed to decode), with their log position.
CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    topic       text NOT NULL,
    partition   integer NOT NULL,
    "offset"    bigint NOT NULL,
    did         text,
    collection  text,
    rkey        text,
    rev         text,
    reason      text NOT NULL,
    raw         jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (topic, partition, "offset", collection, rkey)
);

-- Consumed position per partition, written in the same transaction as the rows it produced.
CREATE TABLE offsets (
    topic        text NOT NULL,
    partition    integer NOT NULL,
    next_offset  bigint NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);
