-- Identity (ingest resolves each #identity): an artist's handle is shown only once it resolves back
-- to the artist's DID and the DID document claims it. handle holds that verified handle or NULL;
-- handle_valid is what the last #identity found (NULL: none seen since this migration); pds is the
-- PDS origin from the DID document.
ALTER TABLE artists ADD COLUMN handle_valid boolean, ADD COLUMN pds text;
-- Handles stored before were copied from #identity frames unchecked: hide them until the artist's
-- next #identity verifies one. A replay from offset 0 ends the same way (v1 identity events upcast
-- unverified).
UPDATE artists SET handle = NULL WHERE handle IS NOT NULL;
