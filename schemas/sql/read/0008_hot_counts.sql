-- Like and comment counts change in nearly every batch. While like_count was indexed (tracks_top),
-- each change wrote a new version of the track into all nine of its indexes, two of them trigram GIN:
-- the projector's costliest statement. Unindexed, and with room left in each page for the new
-- version, a count change is a heap-only (HOT) update that touches no index at all. The all-time
-- order by likes moves to a narrow table of its own, kept by the same recount.
ALTER TABLE tracks SET (fillfactor = 75);
ALTER TABLE artists SET (fillfactor = 80);
DROP INDEX tracks_top;

CREATE TABLE tracks_by_likes (
    uri        text PRIMARY KEY,
    like_count integer NOT NULL
);
INSERT INTO tracks_by_likes (uri, like_count) SELECT uri, like_count FROM tracks;
CREATE INDEX tracks_by_likes_top ON tracks_by_likes (like_count DESC, uri DESC);
