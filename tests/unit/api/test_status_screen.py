"""The status screen (pure): every section is shown, with what is absent or unreachable named."""

from __future__ import annotations

from api.status_screen import render


def test_a_screen_of_running_and_missing_parts() -> None:
    status = {
        "generatedAt": "2026-11-25T12:00:00.000Z",
        "schema": "plyr_read",
        "database": {"reachable": True},
        "upstreams": {
            "state": "ok",
            "cursors": [
                {"upstream": "wss://bsky.network", "seq": 123, "savedAt": "2026-11-25T11:59:57.000Z"},
                {"upstream": "wss://other.example", "savedAt": "2026-11-25T09:00:00.000Z", "halted": "FutureCursor"},
            ],
        },
        "repos": {"state": "absent", "note": "no plyr_ingest.repos", "byState": [], "total": 0},
        "broker": {
            "state": "ok",
            "bootstrap": "kafka:9092",
            "topic": "plyr.index.events.v1",
            "partitions": [
                {"partition": 0, "endOffset": 10, "projected": 7, "lag": 3},
                {"partition": 1, "endOffset": 4, "projected": 4, "lag": 0},
            ],
            "totalLag": 3,
        },
        "projectors": {"state": "ok", "members": []},
        "deadLetters": {"state": "ok", "total": 2, "topReasons": [{"reason": "$.title: too long", "count": 2}]},
        "rates": {
            "state": "ok",
            "windowSeconds": 300,
            "byCollection": [{"collection": "like", "count": 900}, {"collection": "track", "count": 30}],
        },
        "api": {"url": "http://api:8080", "health": "unreachable", "ready": "unreachable", "detail": "refused"},
    }
    screen = render(status)
    lines = screen.splitlines()
    assert lines[0] == "plyr-index status  2026-11-25T12:00:00.000Z  schema plyr_read"
    assert "  wss://bsky.network   123  3s ago" in lines
    assert any("wss://other.example" in line and "3h ago" in line and "HALTED: FutureCursor" in line for line in lines)
    assert "repos: absent" in lines and "  (no plyr_ingest.repos)" in lines
    assert "  0          10          7          3" in lines
    assert "  total lag: 3 message(s)" in lines
    assert "  none running" in lines
    assert "dead letters: 2" in lines and "  2  $.title: too long" in lines
    assert "applied in the last 300s (per second)" in lines
    assert "  like   3.0/s" in lines and "  track  0.1/s" in lines
    assert "  health unreachable   ready unreachable" in lines and "  (refused)" in lines
