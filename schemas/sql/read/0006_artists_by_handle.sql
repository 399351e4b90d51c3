-- Actors are named by handle as often as by DID.
CREATE INDEX artists_by_handle ON artists (handle);
