"""Query parameters and page cursors that Postgres cannot take are 400s at the parser, never 500s."""

from __future__ import annotations

import base64
import json
from datetime import datetime

import pytest

from api import cursor
from api.errors import InvalidRequest
from api.xrpc import parse_params, query_lexicons


def _cursor(*parts: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("nsid", "name"),
    [("getLatestTracks", "album"), ("search", "q"), ("getArtist", "actor"), ("listArtists", "cursor")],
)
def test_a_nul_character_in_a_parameter_is_invalid(nsid: str, name: str) -> None:
    # Postgres text cannot hold NUL: it used to reach the query and fail it with a 500.
    with pytest.raises(InvalidRequest) as err:
        parse_params(query_lexicons()[f"fm.plyr.index.{nsid}"], {name: ["a\x00b"]})
    assert name in err.value.message


def test_a_nul_character_inside_a_cursor_is_malformed() -> None:
    with pytest.raises(InvalidRequest):
        cursor.decode("latest", _cursor("latest", "2026-01-01T00:00:00Z", "at://x\x00"), (datetime, str))
    assert cursor.decode("artists", _cursor("artists", "2026-01-01T00:00:00Z", "at://x"), (datetime, str))


@pytest.mark.parametrize(
    ("kinds", "parts"),
    [
        ((int,), [2**63]),  # a bigint column's key past int64 (activity seq, comment timestampMs)
        ((int,), [-(2**63) - 1]),
        ((cursor.Int32, str), [2**31, "at://x"]),  # an integer column's key past int32 (likes, ranks)
        ((cursor.Int32,), [-(2**31) - 1]),
    ],
)
def test_an_integer_key_outside_its_column_is_malformed(kinds: tuple[type, ...], parts: list[object]) -> None:
    # Postgres refuses a parameter outside its column's range; such a cursor was a 500.
    with pytest.raises(InvalidRequest):
        cursor.decode("t", _cursor("t", *parts), kinds)


def test_integer_keys_at_their_column_bounds_decode() -> None:
    assert cursor.decode("t", _cursor("t", 2**63 - 1), (int,)) == (2**63 - 1,)
    assert cursor.decode("t", _cursor("t", 2**31 - 1, "u"), (cursor.Int32, str)) == (2**31 - 1, "u")
    assert cursor.decode("t", cursor.encode("t", 7, "u"), (cursor.Int32, str)) == (7, "u")


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_a_time_key_outside_the_utc_calendar_is_malformed(when: str) -> None:
    # Python holds these times, but not their UTC, which the driver sends: such a cursor was a 500.
    with pytest.raises(InvalidRequest):
        cursor.decode("t", _cursor("t", when, "u"), (datetime, str))
    assert cursor.decode("t", _cursor("t", "0001-01-01T00:00:00Z", "u"), (datetime, str))
