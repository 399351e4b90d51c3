"""The envelope contract: round trip, action/payload rules, versioning."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from schemas.codec import EnvelopeError, decode, encode
from schemas.envelope import SCHEMA_VERSION, AccountEvent, Action, Event, IdentityEvent, RecordEvent, SyncEvent

BASE: dict[str, Any] = {
    "did": "did:plc:abcdefghijklmnopqrstuvwx",
    "upstream": "relay.test",
    "seq": 5,
    "time": "2026-01-02T03:04:05.123Z",
}
CID = "bafyreie5cvv4h45feadgeuwhbcutmh6t2ceseocckahdoe6uat64zmz454"


def test_every_kind_round_trips() -> None:
    events: list[Event] = [
        RecordEvent(
            **BASE,
            rev="3kabc2xyz22a2",
            collection="fm.plyr.track",
            rkey="3kabc2xyz22a2",
            action=Action.CREATE,
            cid=CID,
            record={"title": "x", "n": 1},
        ),
        RecordEvent(
            **BASE,
            rev="3kabc2xyz22a2",
            collection="fm.plyr.track",
            rkey="3kabc2xyz22a2",
            action=Action.DELETE,
        ),
        IdentityEvent(**BASE, handle="artist.test"),
        IdentityEvent(**BASE, handle="artist.test", handle_valid=True, pds="https://pds.test", signing_key="zQ3sh"),
        AccountEvent(**BASE, active=False, status="takendown"),
        SyncEvent(**BASE, rev="3kabc2xyz22a2", commit=CID),
    ]
    for event in events:
        assert decode(encode(event)) == event
    assert orjson.loads(encode(events[0]))["schema_version"] == SCHEMA_VERSION == 2


def test_v1_identity_events_upcast_unverified() -> None:
    v1 = {**BASE, "schema_version": 1, "kind": "identity", "handle": "artist.test"}
    event = decode(orjson.dumps(v1))
    assert isinstance(event, IdentityEvent)
    assert (event.schema_version, event.handle, event.handle_valid, event.pds) == (2, "artist.test", False, None)
    account = decode(orjson.dumps({**BASE, "schema_version": 1, "kind": "account", "active": True}))
    assert isinstance(account, AccountEvent) and account.schema_version == 2
    # No v1 envelope can carry a verified handle, whatever it says.
    forged = decode(orjson.dumps({**v1, "handle_valid": True}))
    assert isinstance(forged, IdentityEvent) and not forged.handle_valid


def test_a_valid_handle_needs_a_handle() -> None:
    with pytest.raises(ValidationError, match="handle_valid needs a handle"):
        IdentityEvent(**BASE, handle_valid=True)


def test_delete_with_record_and_create_without_are_rejected() -> None:
    with pytest.raises(ValidationError, match="delete carries no record"):
        RecordEvent(
            **BASE,
            rev="3kabc2xyz22a2",
            collection="fm.plyr.track",
            rkey="a",
            action=Action.DELETE,
            cid=CID,
            record={},
        )
    with pytest.raises(ValidationError, match="needs both record and cid"):
        RecordEvent(**BASE, rev="3kabc2xyz22a2", collection="fm.plyr.track", rkey="a", action=Action.CREATE)


def test_envelopes_are_frozen_and_closed() -> None:
    event = IdentityEvent(**BASE, handle="artist.test")
    with pytest.raises(ValidationError):
        event.handle = "other.test"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        IdentityEvent(**BASE, handle="artist.test", surprise=1)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        b'{"schema_version": 99, "kind": "identity"}',
        b'{"kind": "identity"}',
        b'{"schema_version": 1, "kind": "nope", "did": "did:plc:x"}',
    ],
)
def test_bad_bytes_raise_envelope_error(data: bytes) -> None:
    with pytest.raises(EnvelopeError):
        decode(data)
