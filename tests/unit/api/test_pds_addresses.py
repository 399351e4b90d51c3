"""The stream's PDS redirect target must resolve only to public addresses: api/identity.py's
DidResolver against a loopback PLC directory (tests/fixtures/atproto_host.py), with the PDS names
answered by a fixed DNS table, so a DID document naming a host that resolves to a private address
(DNS rebinding, an internal name) is refused however public its name looks."""

from __future__ import annotations

import pytest

from api.identity import DidResolver, ResolveError, ResolveProblem
from runtime.outbound import Outbound
from tests.fixtures.atproto_host import serving_atproto_host
from tests.unit.runtime.test_outbound import StaticResolver

DNS = {
    "pds.example.com": ["93.184.215.14"],
    "rebound.example.com": ["93.184.215.14", "10.0.0.7"],
    "internal.example.com": ["169.254.169.254"],
}


async def test_a_pds_name_resolving_to_a_private_address_is_refused() -> None:
    async with serving_atproto_host() as plc:
        dids = {name: f"did:plc:{name.split('.')[0]:a<24}" for name in DNS}
        for name, did in dids.items():
            plc.add_identity(did, f"https://{name}")
        async with Outbound(allow_private=False, dns=StaticResolver(DNS)) as outbound:
            resolver = DidResolver(outbound, plc.url)
            assert str(await resolver.pds(dids["pds.example.com"])) == "https://pds.example.com"
            for name in ("rebound.example.com", "internal.example.com"):
                with pytest.raises(ResolveError) as caught:
                    await resolver.pds(dids[name])
                assert caught.value.problem is ResolveProblem.UNSAFE_ENDPOINT and not caught.value.retriable, name
        # A deployment that allows private PDS hosts (tests, a private network) skips the check.
        async with Outbound(allow_private=True, dns=StaticResolver(DNS)) as lax:
            assert (
                str(await DidResolver(lax, plc.url).pds(dids["internal.example.com"])) == "https://internal.example.com"
            )
