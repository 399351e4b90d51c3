"""Pure: the phrases fuzzy search looks up for a query, built from its words and their close spellings.

A query's fuzzy matches are titles (handles, list names) whose trigram similarity to it is at least
0.4 (pg_trgm's measure: the Jaccard index of the two sets of word trigrams). Such a title is nearly
always made of the query's words, or of words one typo from them, in any order, some perhaps left
out. So instead of comparing the query with every title, fuzzy search builds those phrases here, ranks
them by their own similarity to the query (computed as pg_trgm does: trigrams are per word, so word
order never changes it), and looks the best up, with the titles they begin, in the ordered index.

Words split where the vocabulary splits them (``SEPARATORS``, the same classes as
``api.search_words.SEPARATORS``). A word's close spellings come from the vocabulary by deletion keys
(``keys``): two words one edit apart (a character changed, added or dropped, or two neighbours
swapped) share one.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping, Sequence

# White space and punctuation other than apostrophes ("don't" is one word); captured, so a split keeps
# the separators at the odd places.
SEPARATORS = re.compile(r"([\s.,;:!?()/_-]+)")
# pg_trgm's words: runs of letters and digits.
TRIGRAM_WORDS = re.compile(r"[^\W_]+")
_NUMBERED = re.compile(r"([^\W\d_]+)\d+")
# Words shorter than this have no close spellings worth trying (every two-letter key is common).
KEYED_FROM = 3
# Queries of more words than this are corrected in their own order only, with no word left out: the
# orders and subsets of more words are too many to rank per query.
_REORDERED_UP_TO = 3
# How much less similar a phrase in another order than typed ranks (its similarity is the same).
_REORDER_COST = 0.2


def keys(word: str) -> set[str]:
    """``word`` and each string left by deleting one of its characters (the vocabulary's keys)."""
    if len(word) < KEYED_FROM:
        return {word}
    return {word, *(word[:i] + word[i + 1 :] for i in range(len(word)))}


def trigrams(text: str) -> frozenset[str]:
    """pg_trgm's trigrams of ``text`` (already lower case): each word padded with two spaces in front
    and one behind."""
    out: set[str] = set()
    for word in TRIGRAM_WORDS.findall(text):
        padded = f"  {word} "
        out.update(padded[i : i + 3] for i in range(len(padded) - 2))
    return frozenset(out)


def similarity(a: frozenset[str], b: frozenset[str]) -> float:
    """pg_trgm's similarity of two trigram sets."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def phrases(norm: str, spellings: Mapping[str, Sequence[str]], limit: int, floor: float) -> list[tuple[float, str]]:
    """Up to ``limit`` phrases other than ``norm`` itself, best first, each with its rank (its similarity
    to ``norm``, at least ``floor``, less _REORDER_COST in another order than typed): ``norm``'s words as
    typed or replaced by one of their ``spellings`` (or a numbered word by its letters), for short
    queries also in other orders or with words left out. Ties keep fewer words left out, then the typed order, first."""
    parts = SEPARATORS.split(norm)
    words = [w for w in parts[::2] if w]
    if not words:
        return []
    target = trigrams(norm)
    cache: dict[str, frozenset[str]] = {}

    def of(word: str) -> frozenset[str]:
        if word not in cache:
            cache[word] = trigrams(word)
        return cache[word]

    options = [[w, *spellings.get(w, ()), *_stem(w)] for w in words]
    # Each choice: the words kept (their places, in typed order), each as typed or respelt; ranked as
    # a set, since order does not change the similarity, then expanded into orders only as needed.
    places = range(len(words))
    if len(words) <= _REORDERED_UP_TO:
        subsets: Iterable[tuple[int, ...]] = itertools.chain.from_iterable(
            itertools.combinations(places, k) for k in range(len(words), 0, -1)
        )
    else:
        subsets = [tuple(places)]
    ranked: list[tuple[float, int, tuple[tuple[int, str], ...]]] = []
    for n, subset in enumerate(subsets):
        for choice in itertools.product(*([(i, w) for w in options[i]] for i in subset)):
            sim = similarity(frozenset().union(*(of(w) for _, w in choice)), target)
            if sim >= floor:
                ranked.append((sim, n, choice))
    typed = tuple(places)
    expanded: list[tuple[float, int, int, str]] = []
    for sim, n, choice in ranked:
        orders = [choice] if len(words) > _REORDERED_UP_TO else itertools.permutations(choice)
        for k, order in enumerate(orders):
            chosen = [w for _, w in order]
            if tuple(i for i, _ in order) == typed:  # all words in the typed order: the typed separators
                expanded.append((sim, n, k, _join(parts, chosen)))
            else:  # a title rarely holds the words in another order: it ranks as if less similar
                rank = sim - (_REORDER_COST if k else 0.0)
                expanded.append((rank, n, k, " ".join(chosen)))
    expanded.sort(key=lambda e: (-e[0], e[1], e[2]))
    out: list[tuple[float, str]] = []
    seen = {norm}
    for rank, _, _, phrase in expanded:
        if phrase not in seen:
            seen.add(phrase)
            out.append((rank, phrase))
            if len(out) == limit:
                break
    return out


def _stem(word: str) -> list[str]:
    """The letters of a word that ends in digits (``name1234`` of a handle, or a numbered title), as one
    more spelling: a title of the name alone shares most of its trigrams."""
    stem = _NUMBERED.fullmatch(word)
    return [stem[1]] if stem is not None and len(stem[1]) >= KEYED_FROM else []


def _join(parts: Sequence[str], words: Sequence[str]) -> str:
    """``words`` in the places of ``parts``' words when they are the same count, else spaced."""
    if len(words) * 2 - 1 != len(parts):
        return " ".join(words)
    out = list(parts)
    out[::2] = words
    return "".join(out)
