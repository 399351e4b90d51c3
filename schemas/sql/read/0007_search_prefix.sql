-- Exact and prefix matches come from ordered btree range scans (byte-wise, text_pattern_ops), complete
-- and cheap; the trigram GIN indexes are left to substring and fuzzy matches.
CREATE INDEX tracks_search_prefix ON tracks (search_norm(title) text_pattern_ops);
CREATE INDEX artists_search_prefix ON artists (search_norm(handle) text_pattern_ops);
CREATE INDEX lists_search_prefix ON lists (search_norm(name) text_pattern_ops);
