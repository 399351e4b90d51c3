-- The vocabulary fuzzy search corrects query words against: every distinct word (whitespace-separated,
-- normalized by search_norm) of track titles, artist handles and list names. It is tens of thousands of
-- rows where the titles are a million, so a trigram look-up for a misspelt word reads short posting
-- lists; the corrected phrases are then found through the ordered (search_norm, key) indexes of 0011.
-- The API refreshes it in bulk (api/search_words.py), never the projector: it costs no write per event.
CREATE TABLE search_words (word text PRIMARY KEY);
CREATE INDEX search_words_trgm ON search_words USING gin (word public.gin_trgm_ops);
-- When the vocabulary was last rebuilt (one row), so replicas of the API do not each rebuild it.
CREATE TABLE search_words_refreshed (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    at timestamptz NOT NULL
);
