-- The vocabulary fuzzy search corrects query words against: every distinct word of track titles,
-- artist handles and list names (search_norm'd, split at spaces and punctuation other than
-- apostrophes), rebuilt in bulk by the API (api/search_words.py), never by the projector, so it costs
-- no write per event.
CREATE TABLE search_words (word text PRIMARY KEY);
-- Each word under itself and under each string left by deleting one of its characters (for words of
-- three or more): a query word and a vocabulary word one typo apart (a character changed, added,
-- dropped, or two swapped) share a key, so corrections are btree look-ups of a query word's own keys,
-- not a trigram scan (pg_trgm over a hundred thousand words rechecks thousands for a short word).
CREATE TABLE search_word_keys (
    key text NOT NULL,
    word text NOT NULL,
    PRIMARY KEY (key, word)
);
-- When the vocabulary was last rebuilt (one row), so replicas of the API do not each rebuild it.
CREATE TABLE search_words_refreshed (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    at timestamptz NOT NULL
);
