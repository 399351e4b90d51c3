"""The substring class's pattern for a query of several words: its words in order, nothing else."""

from __future__ import annotations

import re

import pytest

from api.queries.search import _words_pattern


@pytest.mark.parametrize(
    ("norm", "pattern"),
    [
        ("blue salo", "%blue%salo%"),
        ("summer melzosun love", "%summer%melzosun%love%"),
        ("rock-n-roll", "%rock%n%roll%"),
        ("under_score", "%under%score%"),
        ("50% off", "%50%off%"),
        ("  two   spaces ", "%two%spaces%"),
        ("ünïcode wörds", "%ünïcode%wörds%"),
    ],
)
def test_several_words_give_their_words_in_order(norm: str, pattern: str) -> None:
    assert _words_pattern(norm) == pattern


@pytest.mark.parametrize("norm", ["melzosun", "a b", "ab cd", "...", "x"])
def test_one_word_or_no_trigram_gives_none(norm: str) -> None:
    # One word: the query's own pattern has the same trigrams. No word of three characters: the
    # pattern would have no trigram, and the index would return every row.
    assert _words_pattern(norm) is None


@pytest.mark.parametrize("norm", ["blue salo", "rock-n-roll", "50% off", "a.b.c def"])
@pytest.mark.parametrize("title", ["{q}", "the {q} song", "x{q}y", "{q}{q}"])
def test_every_text_holding_the_query_matches_the_pattern(norm: str, title: str) -> None:
    pattern = _words_pattern(norm)
    assert pattern is not None
    # LIKE's % as a regular expression, its escapes undone: a necessary condition, never a filter.
    parts = [re.escape(p.replace("\\%", "%").replace("\\_", "_")) for p in re.split(r"(?<!\\)%", pattern)]
    assert re.fullmatch(".*".join(parts), title.format(q=norm), re.DOTALL)
