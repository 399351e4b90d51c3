-- An operator's takedown of one record (a moderation event naming collection and rkey). While a
-- record is taken down its read-model rows are held here instead of in their tables, so every read,
-- count, search and stream leaves it out without a visibility join, and a restore puts the latest
-- version back as it was. The records ledger is untouched: revs keep their order through a takedown.
CREATE TABLE record_takedowns (
    uri         text PRIMARY KEY,
    did         text NOT NULL,
    collection  text NOT NULL,
    reason      text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX record_takedowns_by_did ON record_takedowns (did);

-- The read-model rows of taken-down records: the row as jsonb (to_jsonb of its table's row type), a
-- list's with its ordered items under "items". Written only while the uri is in record_takedowns.
CREATE TABLE held_records (
    uri         text PRIMARY KEY REFERENCES record_takedowns (uri) ON DELETE CASCADE,
    did         text NOT NULL,
    collection  text NOT NULL,
    row         jsonb NOT NULL
);
