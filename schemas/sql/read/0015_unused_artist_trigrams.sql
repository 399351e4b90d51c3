-- tracks_search_artist (trigrams of a track's free-text artist field) served no query: search finds
-- artists by their handle (artists_search) and tracks by title (tracks_search, tracks_search_sorted).
-- It cost a GIN entry per trigram of the field on every track write.
DROP INDEX tracks_search_artist;
