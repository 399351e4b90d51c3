"""The crash suite, small: kill -9 of every kind of part (ingester, both projectors, API, the broker on
persistent storage, PostgreSQL) while a music corpus is replayed, then the read models equal the ground
truth exactly and the API answers from them. bench/chaos.py runs the same at full size.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.fixtures.chaos import VICTIMS, ChaosPlan, run_chaos
from tests.fixtures.music_corpus import music_corpus

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.slow]


async def test_kill9_anywhere_loses_nothing_and_doubles_nothing(tmp_path: Path) -> None:
    corpus = music_corpus(300, repos=12, seed=3)
    # Seven kills: a full round of every kind of part, then one more; publishing spans most of them.
    plan = ChaosPlan(kills=7, seed=3, gap_s=(0.8, 2.5), publish_s=9.0)
    # A bound on a hung run, not a timed assertion.
    async with asyncio.timeout(300):
        report = await run_chaos(corpus, plan, tmp_path)
    assert sum(report.kills.values()) == 7
    assert set(report.kills) == set(VICTIMS)
    # Every event of the corpus reached the log at least once (re-deliveries after kills come on top).
    assert report.log_messages >= report.events
    assert report.differences.count == 0, report.differences.summary()
    assert report.api_differences == []
    assert report.api_checks > 12
