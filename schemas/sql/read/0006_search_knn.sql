-- Search reads each match class (exact, prefix, substring, fuzzy) as its own short, index-ordered scan:
-- GiST trigram indexes answer LIKE and similarity (%) filters AND return rows nearest first (<->), so a
-- page stops after a page's worth of rows instead of ranking every candidate. They replace the GIN ones.
DROP INDEX tracks_search;
DROP INDEX tracks_search_artist;
DROP INDEX artists_search;
DROP INDEX lists_search;
CREATE INDEX tracks_search ON tracks USING gist (search_norm(title) public.gist_trgm_ops);
CREATE INDEX artists_search ON artists USING gist (search_norm(handle) public.gist_trgm_ops);
CREATE INDEX lists_search ON lists USING gist (search_norm(name) public.gist_trgm_ops);

-- Actors are named by handle as often as by DID.
CREATE INDEX artists_by_handle ON artists (handle);
