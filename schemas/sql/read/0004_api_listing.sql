-- Listing artists (newest first) and tracks by album name across artists, for the read API.
CREATE INDEX artists_listing ON artists (indexed_at DESC, did DESC) WHERE track_count > 0;
CREATE INDEX tracks_by_album_name ON tracks (album, sort_at DESC, uri DESC) WHERE album IS NOT NULL;
