"""runtime/outbound.py without a network: DNS answers are limited to public addresses, and a guarded fetch
of a name that resolves only to private addresses fails before any connection."""

from __future__ import annotations

import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from runtime.outbound import FetchError, FetchProblem, Outbound, PrivateAddressError, PublicOnlyResolver


class StaticResolver(AbstractResolver):
    """Answers from a table."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.table:
            raise OSError(f"no such name {host}")
        return [
            ResolveResult(
                hostname=host,
                host=ip,
                port=port,
                family=socket.AF_INET6 if ":" in ip else socket.AF_INET,
                proto=0,
                flags=0,
            )
            for ip in self.table[host]
        ]

    async def close(self) -> None:
        pass


TABLE = {
    "mixed.example.com": ["10.0.0.7", "93.184.215.14", "::1", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
    "rebound.example.com": ["127.0.0.1", "169.254.169.254", "::ffff:10.0.0.1", "fd00::1"],
}


async def test_only_public_answers() -> None:
    resolver = PublicOnlyResolver(StaticResolver(TABLE))
    answers = await resolver.resolve("mixed.example.com", 443)
    assert [a["host"] for a in answers] == ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]
    with pytest.raises(PrivateAddressError):
        await resolver.resolve("rebound.example.com", 443)


async def test_guarded_fetch_refuses_names_that_resolve_privately() -> None:
    dns = StaticResolver(TABLE)
    async with Outbound(allow_private=False, dns=dns) as outbound:
        with pytest.raises(FetchError) as caught:
            await outbound.get_bytes("https://rebound.example.com/x", guarded=True, max_bytes=10, time_limit=5)
        assert caught.value.problem is FetchProblem.PRIVATE_ADDRESS and not caught.value.retriable
        assert dns.asked == ["rebound.example.com"]
        # Literal addresses and unsafe URLs never reach DNS at all.
        for url, problem in [
            ("https://127.0.0.1/x", FetchProblem.PRIVATE_ADDRESS),
            ("https://[::ffff:169.254.169.254]/", FetchProblem.PRIVATE_ADDRESS),
            ("http://mixed.example.com/x", FetchProblem.UNSAFE_URL),
            ("https://mixed.example.com@127.0.0.1/", FetchProblem.UNSAFE_URL),
            ("https://2130706433/", FetchProblem.UNSAFE_URL),
        ]:
            with pytest.raises(FetchError) as caught:
                await outbound.get_bytes(url, guarded=True, max_bytes=10, time_limit=5)
            assert caught.value.problem is problem, url
        assert dns.asked == ["rebound.example.com"]


async def test_closed_outbound_refuses() -> None:
    outbound = Outbound(allow_private=True)
    async with outbound:
        pass
    await outbound.aclose()
    with pytest.raises(RuntimeError):
        await outbound.get_bytes("http://127.0.0.1:1/", guarded=False, max_bytes=1, time_limit=1)


async def test_a_host_others_will_fetch_must_resolve_only_to_public_addresses() -> None:
    dns = StaticResolver({**TABLE, "public.example.com": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]})
    async with Outbound(allow_private=False, dns=dns) as outbound:
        await outbound.require_public("public.example.com")
        await outbound.require_public("93.184.215.14")
        # One private answer is enough: the browser following a redirect may pick any of them.
        for host in ("mixed.example.com", "rebound.example.com", "127.0.0.1", "[::1]", "169.254.169.254"):
            with pytest.raises(FetchError) as caught:
                await outbound.require_public(host)
            assert caught.value.problem is FetchProblem.PRIVATE_ADDRESS and not caught.value.retriable, host
        with pytest.raises(FetchError) as caught:
            await outbound.require_public("unknown.example.com")
        assert caught.value.problem is FetchProblem.NETWORK and caught.value.retriable
    assert dns.asked == ["public.example.com", "mixed.example.com", "rebound.example.com", "unknown.example.com"]
    async with Outbound(allow_private=True, dns=dns) as lax:
        await lax.require_public("rebound.example.com")
    assert len(dns.asked) == 4
