"""The phrases fuzzy search looks up: deletion keys, pg_trgm's similarity, and the ranking of respelt,
reordered and shortened phrases."""

from __future__ import annotations

from api import spelling


def test_words_one_typo_apart_share_a_key() -> None:
    def near(a: str, b: str) -> bool:
        return bool(spelling.keys(a) & spelling.keys(b))

    assert near("echo", "echa")  # changed
    assert near("stop", "stopp")  # added
    assert near("don't", "dont")  # dropped
    assert near("road", "raod")  # swapped
    assert not near("road", "rain")  # two changes
    assert spelling.keys("ab") == {"ab"}  # too short to respell


def test_similarity_is_pg_trgms() -> None:
    # Values pg_trgm gives: similarity('echo', 'echa') = 3/7, similarity('sato road', 'road sato') = 1.
    assert spelling.similarity(spelling.trigrams("echo"), spelling.trigrams("echa")) == 3 / 7
    assert spelling.similarity(spelling.trigrams("sato road"), spelling.trigrams("road sato")) == 1.0
    assert spelling.trigrams("don't") == spelling.trigrams("don t")  # words are runs of letters and digits


def test_phrases_rank_respellings_orders_and_shorter_phrases() -> None:
    found = spelling.phrases("sato road", {"sato": ["kato"], "road": ["roads"]}, 10, 0.3)
    phrases = [p for _, p in found]
    assert "sato road" not in phrases  # the query itself is the exact class, not a correction
    # Another order keeps every trigram (similarity 1) but ranks 0.2 lower; respelt, 9 of 12 trigrams.
    assert found[:2] == [(0.8, "road sato"), (0.75, "sato roads")]
    assert phrases.index("kato road") < phrases.index("sato")  # a word left out ranks lower still
    assert [r for r, _ in found] == sorted((r for r, _ in found), reverse=True)
    assert len(spelling.phrases("sato road", {"sato": ["kato"], "road": ["roads"]}, 3, 0.3)) == 3


def test_phrases_keep_the_typed_separators_and_long_queries_their_order() -> None:
    handle = [p for _, p in spelling.phrases("echo-artist.test", {"echo": ["echa"]}, 50, 0.3)]
    assert "echa-artist.test" in handle
    long = [p for _, p in spelling.phrases("a bb ccc dddd eeee", {"dddd": ["ddd"]}, 50, 0.0)]
    assert long == ["a bb ccc ddd eeee"]


def test_a_numbered_word_is_also_tried_without_its_number() -> None:
    assert "fenbreka" in [p for _, p in spelling.phrases("fenbreka49830", {}, 10, 0.3)]
