"""The top-tracks timer: a failed refresh is counted and the next tick tries again; its interval setting."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from prometheus_client import CollectorRegistry

from projector.metrics import ProjectorMetrics
from projector.ranking import refresh_periodically
from projector.settings import load_projector
from runtime.settings import SettingsError


async def test_a_failed_refresh_is_counted_and_the_timer_goes_on() -> None:
    metrics = ProjectorMetrics(registry := CollectorRegistry())
    calls = 0
    three = asyncio.Event()

    async def refresh() -> dict[str, int]:
        nonlocal calls
        calls += 1
        if calls == 3:
            three.set()
        if calls == 1:
            raise ConnectionError("database went away")
        return {"day": 1, "week": 1, "month": 1}

    timer = asyncio.create_task(
        refresh_periodically(refresh, 0.01, duration=metrics.top_refresh_seconds, failures=metrics.top_refresh_failures)
    )
    try:
        async with asyncio.timeout(5):
            await three.wait()
    finally:
        timer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await timer
    assert registry.get_sample_value("plyr_projector_top_tracks_refresh_failures_total") == 1
    assert (registry.get_sample_value("plyr_projector_top_tracks_refresh_seconds_count") or 0) >= 1


def test_the_refresh_interval_is_a_validated_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_projector().top_refresh_seconds == 60
    monkeypatch.setenv("PROJECTOR_TOP_REFRESH_SECONDS", "5")
    assert load_projector().top_refresh_seconds == 5
    monkeypatch.setenv("PROJECTOR_TOP_REFRESH_SECONDS", "0")
    with pytest.raises(SettingsError, match="PROJECTOR_TOP_REFRESH_SECONDS"):
        load_projector()
