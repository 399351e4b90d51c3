-- Per repo in scope (holding fm.plyr.* records), what verification needs: the rev, data root and
-- commit of the last commit accepted, and where the repo stands. O(1) per repo.
--   synchronized   : live commits verify against rev/data_cid and go on the log
--   desynchronized : a commit failed verification (reason says which rule); a resync is due
--   backfilling    : the repo's existing records are being (or are to be) exported onto the log
--   resyncing      : a resync is under way
-- Live commits of a repo that is not synchronized are held by the ingester and released, in order,
-- once the backfill or resync lands.
CREATE TABLE repos (
    did         text PRIMARY KEY,
    rev         text,
    data_cid    text,
    commit_cid  text,
    sync_state  text NOT NULL DEFAULT 'synchronized'
        CHECK (sync_state IN ('synchronized', 'desynchronized', 'backfilling', 'resyncing')),
    reason      text,
    pds         text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX repos_pending ON repos (updated_at) WHERE sync_state <> 'synchronized';
