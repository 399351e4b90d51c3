"""Retry-After as the server wrote it (delta-seconds or an HTTP date) → seconds to wait."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from runtime.outbound import retry_after_seconds


def test_delta_seconds_and_dates() -> None:
    now = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(" 0 ") == 0.0
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert retry_after_seconds(later, now=now.timestamp()) == 90.0
    earlier = format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert retry_after_seconds(earlier, now=now.timestamp()) == 0.0


def test_absent_or_unreadable_is_none() -> None:
    for value in (None, "", "soon", "-5", "1.5", "Wed, 99 Foo 2026 00:00:00 GMT"):
        assert retry_after_seconds(value) is None
