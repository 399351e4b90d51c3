"""The replay's progress line (pure)."""

from __future__ import annotations

from projector.rebuild import render_progress


def test_the_replay_progress_line() -> None:
    assert render_progress(250_000, 1_000_000, 50.0) == (
        "replay [######..................] 250,000/1,000,000 events · 5,000 events/s · ETA 2:30"
    )
    # The log grows while the replay runs: past the target it says it has caught up.
    assert render_progress(1_000_100, 1_000_000, 200.0).endswith("· 5,000 events/s · caught up in 3:20")
    assert render_progress(0, 0, 0.0) == "replay [########################] 0/0 events · 0 events/s · caught up in 0:00"
