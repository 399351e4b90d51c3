-- Search walks one ordered btree per kind for its exact, prefix and (common words') substring matches,
-- key (search_norm(text) byte-wise, key) so every class has one order and a LIMIT stops the walk early.
-- The INCLUDE columns make those walks index-only (the planner needs the raw text to match the
-- expression, and the visibility and type columns to filter): a common word's substring class reads a
-- few thousand index entries instead of a trigram bitmap of every title that holds it. They replace
-- 0007's prefix indexes, so a track write still maintains one btree here.
DROP INDEX tracks_search_prefix;
DROP INDEX artists_search_prefix;
DROP INDEX lists_search_prefix;
CREATE INDEX tracks_search_sorted ON tracks (search_norm(title) text_pattern_ops, uri) INCLUDE (title, did);
CREATE INDEX artists_search_sorted ON artists (search_norm(handle) text_pattern_ops, did)
    INCLUDE (handle, active, local_takedown);
CREATE INDEX lists_search_sorted ON lists (search_norm(name) text_pattern_ops, uri) INCLUDE (name, did, list_type);
-- Whether to walk one of these or build the trigram bitmap is the planner's choice per query (the API
-- asks for custom plans); the default statistics tell common text from rare well enough, and a higher
-- target (1000) made ANALYZE of a million tracks take 10.5 s instead of 1.4 s.
