-- A repo's comments by author: account changes and purges find them by DID, and a batch must never
-- scan the whole table for that.
CREATE INDEX comments_by_author ON comments (did, created_at DESC, uri DESC);

-- The few hidden repos (upstream inactive or taken down here): recounts exclude their likes and
-- comments with a probe of this small index.
CREATE INDEX artists_hidden ON artists (did) WHERE NOT active OR local_takedown;
