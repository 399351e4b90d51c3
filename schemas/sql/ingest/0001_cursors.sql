-- Durable per-upstream firehose cursors. `seq` is the high-water mark of frames whose events the
-- broker acknowledged; `halted` is set when the upstream answered FutureCursor and cleared only by
-- an operator (plyr-index ingest --resume-upstream URL).
CREATE TABLE cursors (
    upstream    text PRIMARY KEY,
    seq         bigint,
    halted      text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
