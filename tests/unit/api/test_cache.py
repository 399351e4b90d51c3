"""The TTL cache: expiry, size bound, off switch."""

from __future__ import annotations

import time

import pytest

from api.cache import TtlCache


def test_entries_expire_are_bounded_and_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    c: TtlCache[str, int] = TtlCache(seconds=10, size=2)
    c.put("a", 1)
    c.put("b", 2)
    assert (c.get("a"), c.get("b")) == (1, 2)
    c.put("c", 3)  # over the size: the oldest put goes
    assert (c.get("a"), c.get("c")) == (None, 3)
    now[0] += 10.5
    assert c.get("b") is None and c.get("c") is None
    off: TtlCache[str, int] = TtlCache(seconds=0, size=2)
    off.put("a", 1)
    assert off.get("a") is None
