"""The pure parts of identity resolution: which handles are looked up, what a TXT record or a
well-known body names, and the nameserver setting."""

from __future__ import annotations

import pytest

from ingest.identity import resolvable_handle, txt_did, well_known_did
from ingest.settings import IngestSettings, parse_nameserver
from runtime.settings import SettingsError, load

DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
OTHER = "did:plc:bobbobbobbobbobbobbobbobb"


@pytest.mark.parametrize(
    ("handle", "resolvable"),
    [
        ("alice.bsky.social", True),
        ("alice.test", True),
        ("xn--ls8h.com", True),
        ("alice.example", False),
        ("printer.local", False),
        ("1.0.0.127.in-addr.arpa", False),
        ("handle.invalid", False),
        ("a.onion", False),
        ("x.localhost", False),
        ("svc.internal", False),
        ("nodots", False),
        ("bad_char.example", False),
    ],
)
def test_which_handles_are_looked_up(handle: str, resolvable: bool) -> None:
    assert resolvable_handle(handle) is resolvable


@pytest.mark.parametrize(
    ("values", "did"),
    [
        ([f"did={DID}".encode()], DID),
        ([b"v=spf1 -all", f"did={DID}".encode()], DID),
        ([f"did={DID}".encode(), f"did={DID}".encode()], DID),
        ([f"did={DID}".encode(), f"did={OTHER}".encode()], None),  # two DIDs: DNS does not decide
        ([b"did=not-a-did"], None),
        ([b"DID=" + DID.encode()], None),
        ([f"did= {DID}".encode()], None),
        ([], None),
        ([b"did=did:plc:\xff\xfe"], None),
    ],
)
def test_what_txt_values_name(values: list[bytes], did: str | None) -> None:
    assert txt_did(values) == did


@pytest.mark.parametrize(
    ("body", "did"),
    [
        (DID.encode(), DID),
        (f"  {DID}\r\n".encode(), DID),
        (f"{DID}\nsomething else".encode(), DID),
        (f"<html>{DID}</html>".encode(), None),
        (b"", None),
        (b"\xff\xfe", None),
        (f"\n{DID}".encode(), None),
    ],
)
def test_what_a_well_known_body_names(body: bytes, did: str | None) -> None:
    assert well_known_did(body) == did


def test_nameservers() -> None:
    assert parse_nameserver("10.0.0.2") == ("10.0.0.2", 53)
    assert parse_nameserver("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_nameserver("::1") == ("::1", 53)
    assert parse_nameserver("[::1]:5353") == ("::1", 5353)
    for bad in ("ns.example.com", "127.0.0.1:0", "127.0.0.1:70000", "[::1]x", "1.2.3.4:port", ""):
        with pytest.raises(ValueError):
            parse_nameserver(bad)


def test_identity_settings_are_checked_at_startup() -> None:
    settings = load(IngestSettings, dns_nameservers="127.0.0.1:5353, [::1]", plc_url="HTTP://PLC.example:8080/")
    assert settings.dns_servers == [("127.0.0.1", 5353), ("::1", 53)]
    assert settings.plc_url == "http://plc.example:8080"
    for bad in ({"plc_url": "ftp://plc.example"}, {"plc_url": "https://plc.example/path"}):
        with pytest.raises(SettingsError, match="INGEST_PLC_URL"):
            load(IngestSettings, **bad)
    with pytest.raises(SettingsError, match="INGEST_DNS_NAMESERVERS"):
        load(IngestSettings, dns_nameservers="ns.example.com")
