"""runtime/urls.py: hostile URLs never pass, harmless spellings are normalised, trust is an exact origin."""

from __future__ import annotations

import pytest

from runtime.urls import (
    Origin,
    UnsafeUrl,
    UrlProblem,
    outbound_url,
    parse_origin,
    service_origin,
    trusted_origins,
    trusted_redirect,
)

P = UrlProblem
TRUSTED = trusted_origins(["https://cdn.example", "https://media.example:8443", "https://xn--bcher-kva.example"])


@pytest.mark.parametrize(
    ("raw", "location"),
    [
        ("https://cdn.example/a.mp3", "https://cdn.example/a.mp3"),
        ("HTTPS://CDN.EXAMPLE/a.mp3", "https://cdn.example/a.mp3"),
        ("https://cdn.example:443/a.mp3", "https://cdn.example/a.mp3"),
        ("https://Cdn.Example:443", "https://cdn.example"),
        ("https://media.example:8443/x.flac", "https://media.example:8443/x.flac"),
        ("https://cdn.example/a.mp3?sig=1&t=2#t=10", "https://cdn.example/a.mp3?sig=1&t=2#t=10"),
        # A punycode host exactly in the trusted list is the operator's choice.
        ("https://xn--bcher-kva.example/x", "https://xn--bcher-kva.example/x"),
        # Non-ASCII after the host is percent-encoded; the host is untouched.
        ("https://cdn.example/caf\u00e9.mp3", "https://cdn.example/caf%C3%A9.mp3"),
        ("https://cdn.example/\u200bx", "https://cdn.example/%E2%80%8Bx"),
        # '@' after the authority is part of the fragment/query: the host is still cdn.example.
        ("https://cdn.example#@evil.com", "https://cdn.example#@evil.com"),
        ("https://cdn.example?@evil.com", "https://cdn.example?@evil.com"),
        ("https://cdn.example/%2e%2e/a", "https://cdn.example/%2e%2e/a"),
    ],
)
def test_trusted_urls_are_normalised(raw: str, location: str) -> None:
    assert str(trusted_redirect(raw, TRUSTED)) == location


HOSTILE = [
    # Not http(s).
    ("javascript:alert(1)", P.SCHEME),
    ("JaVaScRiPt:alert(document.cookie)", P.SCHEME),
    ("data:audio/mpeg;base64,SUQzBAAAAAAA", P.SCHEME),
    ("vbscript:msgbox(1)", P.SCHEME),
    ("file:///etc/passwd", P.SCHEME),
    ("ftp://cdn.example/a.mp3", P.SCHEME),
    ("blob:https://cdn.example/uuid", P.SCHEME),
    ("", P.SCHEME),
    ("cdn.example/a.mp3", P.SCHEME),
    # Protocol-relative and authority-less forms browsers would still send somewhere.
    ("//evil.com/a.mp3", P.SCHEME),
    ("https:evil.com/a.mp3", P.NO_AUTHORITY),
    ("https:/evil.com/a.mp3", P.NO_AUTHORITY),
    ("https:///evil.com/a.mp3", P.HOST),
    # Userinfo tricks.
    ("https://cdn.example@evil.com/a.mp3", P.USERINFO),
    ("https://cdn.example:443@evil.com/", P.USERINFO),
    ("https://user:pass@cdn.example/a.mp3", P.USERINFO),
    ("https://@cdn.example/", P.USERINFO),
    # Backslashes (WHATWG reads them as '/').
    ("https://evil.com\\@cdn.example/", P.BACKSLASH),
    ("https://cdn.example\\.evil.com/", P.BACKSLASH),
    ("https:\\\\evil.com/", P.BACKSLASH),
    # Percent-encoding in the host.
    ("https://cdn.example%2eevil.com/", P.HOST),
    ("https://cdn.example%40evil.com/", P.HOST),
    ("https://%63dn.example/", P.HOST),
    # Whitespace and control characters (header injection, WHATWG tab/newline stripping).
    ("https://cdn.example/a\r\nSet-Cookie: x=1", P.CONTROL_OR_SPACE),
    (" https://cdn.example/a.mp3", P.CONTROL_OR_SPACE),
    ("https://cdn.exa\tmple/a.mp3", P.CONTROL_OR_SPACE),
    ("https://cdn.exa\nmple/a.mp3", P.CONTROL_OR_SPACE),
    ("https://cdn.example/a b.mp3", P.CONTROL_OR_SPACE),
    ("https://cdn.example\x00.evil.com/", P.CONTROL_OR_SPACE),
    # Odd Unicode in the host: homographs, full-width, zero-width, IDN.
    ("https://cdn.ex\u0430mple/a.mp3", P.NOT_ASCII),  # Cyrillic a
    ("https://\uff43dn.example/a.mp3", P.NOT_ASCII),  # full-width c
    ("https://cdn.example\u200b/a.mp3", P.NOT_ASCII),  # zero-width space
    ("https://cdn\u200d.example/", P.NOT_ASCII),  # zero-width joiner
    ("https://cdn.example\u3002evil.com/", P.NOT_ASCII),  # ideographic full stop
    ("https://b\u00fccher.example/x", P.NOT_ASCII),
    # Trailing dot (same DNS name, different origin string).
    ("https://cdn.example./a.mp3", P.TRAILING_DOT),
    ("https://cdn.example.:443/a.mp3", P.TRAILING_DOT),
    # Integer, octal, hex and short IPv4 spellings.
    ("http://2130706433/", P.NUMERIC_HOST),
    ("http://0x7f000001/", P.NUMERIC_HOST),
    ("http://0177.0.0.1/", P.NUMERIC_HOST),
    ("http://0x7f.0.0.1/", P.NUMERIC_HOST),
    ("http://127.1/", P.NUMERIC_HOST),
    ("http://127.0.0.01/", P.NUMERIC_HOST),
    ("http://256.0.0.1/", P.NUMERIC_HOST),
    ("http://1.2.3.4.5/", P.NUMERIC_HOST),
    ("http://cdn.example.0x10/", P.NUMERIC_HOST),
    # Ports.
    ("https://cdn.example:0443/a.mp3", P.PORT),
    ("https://cdn.example:/a.mp3", P.PORT),
    ("https://cdn.example:99999/", P.PORT),
    ("https://cdn.example:+443/", P.PORT),
    ("https://cdn.example:0/", P.PORT),
    ("https://cdn.example:443:443/", P.PORT),
    # Malformed hosts.
    ("https://[::1/", P.HOST),
    ("https://[::1]x/", P.HOST),
    ("https://[not-an-ip]/", P.HOST),
    ("https://[fe80::1%25eth0]/", P.HOST),
    ("https://-cdn.example/", P.HOST),
    ("https://cdn..example/", P.HOST),
    ("https://cdn_example.com/", P.HOST),
    ("https://" + "a" * 64 + ".example/", P.HOST),
    ("https://" + "a" * 9000 + ".example/", P.TOO_LONG),
    # Well-formed but not trusted: other hosts, lookalikes, other ports, other schemes.
    ("https://evil.com/a.mp3", P.UNTRUSTED),
    ("https://cdn.example.evil.com/a.mp3", P.UNTRUSTED),
    ("https://evilcdn.example/a.mp3", P.UNTRUSTED),
    ("https://evil.com/https://cdn.example/a.mp3", P.UNTRUSTED),
    ("https://evil.com#https://cdn.example", P.UNTRUSTED),
    ("https://cdn.example:8443/a.mp3", P.UNTRUSTED),
    ("https://media.example/x.flac", P.UNTRUSTED),
    ("http://cdn.example/a.mp3", P.UNTRUSTED),
    ("https://xn--cdn-lqa.example/a.mp3", P.UNTRUSTED),
    ("https://127.0.0.1/a.mp3", P.UNTRUSTED),
    ("https://[::ffff:127.0.0.1]/a.mp3", P.UNTRUSTED),
]


@pytest.mark.parametrize(("raw", "problem"), HOSTILE)
def test_hostile_urls_are_never_trusted(raw: str, problem: UrlProblem) -> None:
    with pytest.raises(UnsafeUrl) as caught:
        trusted_redirect(raw, TRUSTED)
    assert caught.value.problem is problem


def test_nothing_is_trusted_without_a_list() -> None:
    with pytest.raises(UnsafeUrl):
        trusted_redirect("https://cdn.example/a.mp3", frozenset())


@pytest.mark.parametrize(
    ("raw", "origin"),
    [
        ("https://cdn.example", Origin("https", "cdn.example", None)),
        ("https://CDN.example:443/", Origin("https", "cdn.example", None)),
        ("http://cdn.example:80", Origin("http", "cdn.example", None)),
        ("http://cdn.example:443", Origin("http", "cdn.example", 443)),
        ("https://cdn.example:8443", Origin("https", "cdn.example", 8443)),
        ("https://[2606:4700:0:0::1111]:8443", Origin("https", "[2606:4700::1111]", 8443)),
    ],
)
def test_configured_origins_are_canonical(raw: str, origin: Origin) -> None:
    assert parse_origin(raw) == origin
    assert parse_origin(str(origin)) == origin


@pytest.mark.parametrize(
    "raw", ["https://cdn.example/audio", "https://cdn.example?x", "cdn.example", "https://a@b.example"]
)
def test_configured_origins_reject_anything_else(raw: str) -> None:
    with pytest.raises(UnsafeUrl):
        trusted_origins([raw])


PDS_OK = [
    ("https://pds.example.com", Origin("https", "pds.example.com", None)),
    ("https://PDS.Example.com:443/", Origin("https", "pds.example.com", None)),
    ("https://pds.example.com:2583", Origin("https", "pds.example.com", 2583)),
    ("https://8.8.8.8", Origin("https", "8.8.8.8", None)),
    ("https://[2606:4700::1111]", Origin("https", "[2606:4700::1111]", None)),
]


@pytest.mark.parametrize(("raw", "origin"), PDS_OK)
def test_public_pds_endpoints(raw: str, origin: Origin) -> None:
    assert service_origin(raw, allow_private=False) == origin


PDS_HOSTILE = [
    ("javascript:alert(1)", P.SCHEME),
    ("data:text/html,hi", P.SCHEME),
    ("//pds.example.com", P.SCHEME),
    ("https://pds.example.com@127.0.0.1", P.USERINFO),
    ("https://pds.example.com\\@evil.com", P.BACKSLASH),
    ("https://pds.example.com./", P.TRAILING_DOT),
    ("https://pds.ex\u0430mple.com", P.NOT_ASCII),
    ("https://pds.example.com\u200b", P.NOT_ASCII),
    ("https://xn--pds-example-q2b.com", P.PUNYCODE),
    ("http://pds.example.com", P.INSECURE),
    ("https://pds.example.com/xrpc", P.NOT_ORIGIN),
    ("https://pds.example.com/?x=1", P.NOT_ORIGIN),
    ("https://pds.example.com#frag", P.NOT_ORIGIN),
    ("https://2130706433", P.NUMERIC_HOST),
    ("https://0x7f.1", P.NUMERIC_HOST),
    ("https://017700000001", P.NUMERIC_HOST),
    # Loopback, private, link-local, CGNAT, multicast, unspecified, broadcast, documentation.
    ("https://127.0.0.1", P.PRIVATE),
    ("https://127.8.9.10", P.PRIVATE),
    ("https://10.1.2.3", P.PRIVATE),
    ("https://172.16.0.1", P.PRIVATE),
    ("https://192.168.1.1", P.PRIVATE),
    ("https://169.254.169.254", P.PRIVATE),
    ("https://100.64.0.1", P.PRIVATE),
    ("https://224.0.0.1", P.PRIVATE),
    ("https://239.255.255.250", P.PRIVATE),
    ("https://0.0.0.0", P.PRIVATE),
    ("https://255.255.255.255", P.PRIVATE),
    ("https://192.0.2.1", P.PRIVATE),
    ("https://240.0.0.1", P.PRIVATE),
    ("https://[::1]", P.PRIVATE),
    ("https://[::]", P.PRIVATE),
    ("https://[fe80::1]", P.PRIVATE),
    ("https://[fec0::1]", P.PRIVATE),
    ("https://[fc00::1]", P.PRIVATE),
    ("https://[fd12:3456::1]", P.PRIVATE),
    ("https://[ff02::1]", P.PRIVATE),
    ("https://[2001:db8::1]", P.PRIVATE),
    ("https://[::ffff:127.0.0.1]", P.PRIVATE),
    ("https://[::ffff:7f00:1]", P.PRIVATE),
    ("https://[::FFFF:10.0.0.1]", P.PRIVATE),
    ("https://[::127.0.0.1]", P.PRIVATE),
    ("https://[64:ff9b::a00:1]", P.PRIVATE),
    ("https://[2002:7f00:1::1]", P.PRIVATE),
    # Names that are never public.
    ("https://localhost", P.PRIVATE),
    ("https://LOCALHOST:443", P.PRIVATE),
    ("https://pds.localhost", P.PRIVATE),
    ("https://printer.local", P.PRIVATE),
    ("https://db.internal", P.PRIVATE),
    ("https://router.home.arpa", P.PRIVATE),
    ("https://pds.test", P.PRIVATE),
    ("https://intranet", P.PRIVATE),
]


@pytest.mark.parametrize(("raw", "problem"), PDS_HOSTILE)
def test_hostile_pds_endpoints(raw: str, problem: UrlProblem) -> None:
    with pytest.raises(UnsafeUrl) as caught:
        service_origin(raw, allow_private=False)
    assert caught.value.problem is problem


def test_public_addresses_embedded_in_ipv6_pass() -> None:
    assert service_origin("https://[::ffff:8.8.8.8]", allow_private=False).host == "[::ffff:808:808]"
    assert service_origin("https://[64:ff9b::808:808]", allow_private=False).host == "[64:ff9b::808:808]"


def test_punycode_pds_only_when_trusted() -> None:
    trusted = frozenset({Origin("https", "xn--pds-example-q2b.com", None)})
    assert service_origin("https://xn--pds-example-q2b.com", allow_private=False, trusted=trusted) in trusted


def test_private_endpoints_only_when_allowed() -> None:
    assert service_origin("http://127.0.0.1:2583", allow_private=True) == Origin("http", "127.0.0.1", 2583)
    assert service_origin("http://localhost:2583/", allow_private=True) == Origin("http", "localhost", 2583)
    # Everything but the address and scheme rules still holds in development.
    for raw, problem in [
        ("javascript:alert(1)", P.SCHEME),
        ("http://a@127.0.0.1", P.USERINFO),
        ("http://2130706433", P.NUMERIC_HOST),
        ("http://127.0.0.1/x", P.NOT_ORIGIN),
        ("http://xn--pds-example-q2b.com", P.PUNYCODE),
    ]:
        with pytest.raises(UnsafeUrl) as caught:
            service_origin(raw, allow_private=True)
        assert caught.value.problem is problem, raw


def test_outbound_urls_keep_their_path() -> None:
    url = outbound_url("https://PDS.example.com/xrpc/com.atproto.sync.getBlob?did=did:plc:x&cid=b", allow_private=False)
    assert str(url) == "https://pds.example.com/xrpc/com.atproto.sync.getBlob?did=did:plc:x&cid=b"
    with pytest.raises(UnsafeUrl) as caught:
        outbound_url("https://169.254.169.254/latest/meta-data/", allow_private=False)
    assert caught.value.problem is P.PRIVATE
