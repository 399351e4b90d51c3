-- One row per track uri a batch has written or counted: a batch claims every track it will write
-- (its own tracks, and the subjects of its likes and comments, whether indexed yet or not) by
-- inserting or locking these rows, in uri order, before it writes any of them. Two projectors' batches
-- that share a track therefore take turns there, including for a track that one of them is creating
-- right now (a row lock on tracks could not cover a row not committed yet: a like's recount then
-- missed the track, and the track's own recount missed the like). Unlogged: a claim lives only as
-- long as its transaction's locks, so nothing here needs to survive a crash, and claiming writes no WAL.
CREATE UNLOGGED TABLE track_claims (uri text PRIMARY KEY);
