"""Projector metrics, on the process's own registry; labels are closed sets."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

COLLECTIONS = frozenset({"fm.plyr.track", "fm.plyr.like", "fm.plyr.list", "fm.plyr.comment", "fm.plyr.actor.profile"})


class ProjectorMetrics:
    """The projector metric families."""

    def __init__(self, registry: CollectorRegistry) -> None:
        ns = "plyr_projector"
        self.applied = Counter(f"{ns}_events_applied", "Record events applied", ["collection"], registry=registry)
        self.stale = Counter(f"{ns}_events_stale", "Events not newer than the ledger (no-ops)", registry=registry)
        self.dead_letters = Counter(f"{ns}_dead_letters", "Events dead-lettered", registry=registry)
        self.batch_size = Histogram(
            f"{ns}_batch_size", "Messages per batch", buckets=(1, 10, 100, 500, 1000, 5000, 20000), registry=registry
        )
        self.batch_seconds = Histogram(f"{ns}_batch_seconds", "Time to apply a batch", registry=registry)
        self.position = Gauge(f"{ns}_next_offset", "Next offset per partition", ["partition"], registry=registry)
        self.lag_seconds = Gauge(f"{ns}_lag_seconds", "Now minus the newest applied event time", registry=registry)
        # Approximate on brokers whose high watermark lags (tansu); exact on Apache Kafka.
        self.lag_messages = Gauge(
            f"{ns}_lag_messages", "High watermark minus next offset, per partition", ["partition"], registry=registry
        )
        self.changes = Counter(f"{ns}_changes", "Rows appended to the change log", registry=registry)
        self.top_refresh_seconds = Histogram(
            f"{ns}_top_tracks_refresh_seconds",
            "Time to recompute the top-tracks rankings (every window)",
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60),
            registry=registry,
        )
        self.top_refresh_failures = Counter(
            f"{ns}_top_tracks_refresh_failures", "Top-tracks refreshes that failed", registry=registry
        )
