"""Which URLs a service may send a client to, or fetch itself: pure parsing and checks, no I/O.

Shared by the API (audio redirects, mirror) and ingest (identity resolution), hence in ``runtime``.
A URL from a record (``audioUrl``), a DID document (the PDS ``serviceEndpoint``) or a handle is untrusted input.
It is parsed here strictly, once, into a canonical ASCII form; the form handed out is the canonical
one, never the raw string, so the parser that checked a URL and the one that follows it cannot
disagree about its host.

Invariants:
- Only ``http``/``https`` with an authority (``scheme://host``); no userinfo, no backslash, no control
  character or space, no non-ASCII character before the path (IDN/homograph/zero-width hosts), no
  percent-encoding in the host, no trailing dot, no empty or zero-padded port.
- Hosts are lower-cased and default ports dropped, so ``https://CDN.example:443`` is ``https://cdn.example``.
- An IPv4 host is accepted only in dotted-decimal form: the integer, octal, hex and short forms
  browsers also accept (``http://2130706433/``, ``http://0x7f.1/``) are refused outright.
- :func:`is_public` refuses loopback, private, link-local, CGNAT, multicast, unspecified and reserved
  addresses, IPv6 forms embedding such an IPv4 address, and names that cannot be public (single
  labels, ``localhost``, ``.local`` ...). A name that resolves to a private address is caught where
  the server connects (runtime/outbound.py), not here.
- Punycode (``xn--``) hosts are accepted only when their origin is exactly in a trusted list.

Spec: the issue's sections 5 and 6 (audio stream, media mirror); URL syntax per RFC 3986, with the
WHATWG URL standard's host parsing in mind (that is what clients follow).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import quote

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_MAX_URL = 8192
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")
_NOT_ASCII = re.compile(r"[^\x00-\x7f]")
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DECIMAL_OCTET = re.compile(r"^(0|[1-9][0-9]{0,2})$")
# WHATWG: a host whose last label is a number (decimal, or 0x-hex) is parsed as an IPv4 address.
_NUMERIC_LABEL = re.compile(r"^([0-9]+|0x[0-9a-f]*)$")
_PORT = re.compile(r"^[1-9][0-9]{0,4}$")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Names that never reach a public host (RFC 6761, RFC 6762, RFC 8375, common private zones).
_LOCAL_SUFFIXES = ("localhost", "local", "localdomain", "internal", "intranet", "lan", "home.arpa", "test", "invalid")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class UrlProblem(StrEnum):
    """Why a URL was refused (closed set: a log field and a test-table key)."""

    TOO_LONG = "too_long"
    CONTROL_OR_SPACE = "control_or_space"
    BACKSLASH = "backslash"
    SCHEME = "scheme"
    NO_AUTHORITY = "no_authority"
    NOT_ASCII = "not_ascii"
    USERINFO = "userinfo"
    PORT = "port"
    HOST = "host"
    TRAILING_DOT = "trailing_dot"
    NUMERIC_HOST = "numeric_host"
    PUNYCODE = "punycode"
    PRIVATE = "private"
    INSECURE = "insecure"
    NOT_ORIGIN = "not_origin"
    UNTRUSTED = "untrusted"


class UnsafeUrl(ValueError):
    """A URL this service will neither redirect to nor fetch."""

    def __init__(self, problem: UrlProblem, url: str) -> None:
        super().__init__(f"{problem}: {url[:200]!r}")
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Origin:
    """``scheme://host[:port]``, canonical: lower case, default port as None, IPv6 in brackets."""

    scheme: str
    host: str
    port: int | None

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}" + (f":{self.port}" if self.port is not None else "")


@dataclass(frozen=True, slots=True)
class SafeUrl:
    """A URL that passed :func:`parse_url`; ``str()`` is its canonical ASCII form."""

    origin: Origin
    # The address when the host is an IP literal; None for a DNS name.
    ip: IPAddress | None
    # Path, query and fragment, with anything outside printable ASCII percent-encoded.
    rest: str

    @property
    def is_punycode(self) -> bool:
        """Whether any label of the host is an IDNA A-label (``xn--``)."""
        return self.ip is None and any(label.startswith("xn--") for label in self.origin.host.split("."))

    def __str__(self) -> str:
        return f"{self.origin}{self.rest}"


def parse_url(raw: str) -> SafeUrl:
    """Parse an absolute http(s) URL strictly; raise :class:`UnsafeUrl` naming the first problem."""
    if len(raw) > _MAX_URL:
        raise UnsafeUrl(UrlProblem.TOO_LONG, raw)
    if _CONTROL_OR_SPACE.search(raw):
        raise UnsafeUrl(UrlProblem.CONTROL_OR_SPACE, raw)
    if "\\" in raw:
        raise UnsafeUrl(UrlProblem.BACKSLASH, raw)
    match = _SCHEME.match(raw)
    scheme = match.group(1).lower() if match else ""
    if scheme not in _DEFAULT_PORTS:
        raise UnsafeUrl(UrlProblem.SCHEME, raw)
    after = raw[len(scheme) + 1 :]
    if not after.startswith("//"):
        raise UnsafeUrl(UrlProblem.NO_AUTHORITY, raw)
    after = after[2:]
    end = min((i for i in (after.find(c) for c in "/?#") if i >= 0), default=len(after))
    authority, rest = after[:end], after[end:]
    if _NOT_ASCII.search(authority):
        raise UnsafeUrl(UrlProblem.NOT_ASCII, raw)
    if "@" in authority:
        raise UnsafeUrl(UrlProblem.USERINFO, raw)
    if "%" in authority:
        raise UnsafeUrl(UrlProblem.HOST, raw)
    host_text, port = _split_port(authority, raw)
    host, ip = _parse_host(host_text.lower(), raw)
    if port == _DEFAULT_PORTS[scheme]:
        port = None
    # Percent-encode what a Location header cannot carry; printable ASCII is left as written.
    rest = _NOT_ASCII.sub(lambda m: quote(m.group(), safe=""), rest)
    return SafeUrl(Origin(scheme, host, port), ip, rest)


def _split_port(authority: str, raw: str) -> tuple[str, int | None]:
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            raise UnsafeUrl(UrlProblem.HOST, raw)
        host, tail = authority[: close + 1], authority[close + 1 :]
        if tail and not tail.startswith(":"):
            raise UnsafeUrl(UrlProblem.HOST, raw)
        port_text = tail[1:] if tail else None
    elif ":" in authority:
        host, port_text = authority.split(":", 1)
    else:
        host, port_text = authority, None
    if port_text is None:
        return host, None
    if not _PORT.match(port_text) or int(port_text) > 65535:
        raise UnsafeUrl(UrlProblem.PORT, raw)
    return host, int(port_text)


def _parse_host(host: str, raw: str) -> tuple[str, IPAddress | None]:
    """The canonical host and its address when it is an IP literal."""
    if host.startswith("["):
        try:
            v6 = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise UnsafeUrl(UrlProblem.HOST, raw) from None
        return f"[{v6.compressed}]", v6
    if not host:
        raise UnsafeUrl(UrlProblem.HOST, raw)
    if host.endswith("."):
        raise UnsafeUrl(UrlProblem.TRAILING_DOT, raw)
    labels = host.split(".")
    if _NUMERIC_LABEL.match(labels[-1]):
        # Only the canonical dotted quad; every other spelling of an address is refused.
        if len(labels) != 4 or not all(_DECIMAL_OCTET.match(label) and int(label) <= 255 for label in labels):
            raise UnsafeUrl(UrlProblem.NUMERIC_HOST, raw)
        return host, ipaddress.IPv4Address(host)
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise UnsafeUrl(UrlProblem.HOST, raw)
    return host, None


def is_public_ip(ip: IPAddress) -> bool:
    """Whether ``ip`` is a global unicast address (also through IPv4-mapped, NAT64 and 6to4 forms)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_public_ip(ip.ipv4_mapped)
        if ip in _NAT64:
            return is_public_ip(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.sixtofour is not None:
            return is_public_ip(ip.sixtofour)
        if ip.is_site_local:
            return False
    return ip.is_global and not (
        ip.is_multicast or ip.is_unspecified or ip.is_reserved or ip.is_loopback or ip.is_link_local or ip.is_private
    )


def is_public(url: SafeUrl) -> bool:
    """Whether the host can be a public one: a global address, or a name outside the local zones."""
    if url.ip is not None:
        return is_public_ip(url.ip)
    host = url.origin.host
    if "." not in host:
        return False
    return not any(host == suffix or host.endswith("." + suffix) for suffix in _LOCAL_SUFFIXES)


def parse_origin(raw: str) -> Origin:
    """An origin as configured (``https://cdn.example``, a trailing ``/`` allowed), canonical."""
    url = parse_url(raw)
    if url.rest not in ("", "/"):
        raise UnsafeUrl(UrlProblem.NOT_ORIGIN, raw)
    return url.origin


def trusted_origins(raw: Iterable[str]) -> frozenset[Origin]:
    """The configured trusted origins; a malformed entry raises :class:`UnsafeUrl` (stop startup)."""
    return frozenset(parse_origin(entry) for entry in raw)


def trusted_redirect(raw: str, trusted: frozenset[Origin]) -> SafeUrl:
    """``raw`` if its origin is exactly one of ``trusted``; raise :class:`UnsafeUrl` otherwise."""
    url = parse_url(raw)
    if url.origin not in trusted:
        raise UnsafeUrl(UrlProblem.UNTRUSTED, raw)
    return url


def outbound_url(raw: str, *, allow_private: bool, trusted: frozenset[Origin] = frozenset()) -> SafeUrl:
    """A URL the service may fetch or send a client to that is not on a trusted list: https, a
    public host, no punycode (unless trusted); with ``allow_private`` (local development) plain http
    and private hosts pass too."""
    url = parse_url(raw)
    if url.origin in trusted:
        return url
    if url.is_punycode:
        raise UnsafeUrl(UrlProblem.PUNYCODE, raw)
    if not allow_private:
        if url.origin.scheme != "https":
            raise UnsafeUrl(UrlProblem.INSECURE, raw)
        if not is_public(url):
            raise UnsafeUrl(UrlProblem.PRIVATE, raw)
    return url


def service_origin(raw: str, *, allow_private: bool, trusted: frozenset[Origin] = frozenset()) -> Origin:
    """A service endpoint (a PDS from a DID document): an :func:`outbound_url` that is only an origin."""
    url = outbound_url(raw, allow_private=allow_private, trusted=trusted)
    if url.rest not in ("", "/"):
        raise UnsafeUrl(UrlProblem.NOT_ORIGIN, raw)
    return url.origin
