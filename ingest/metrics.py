"""Every ingest counter and gauge, on the process's own registry, with closed label sets.

Labels are the upstream (configured, so bounded), a :class:`~ingest.pipeline.FrameKind`, a
:class:`~ingest.errors.DropReason`, and a collection label limited to the collections this index
knows (anything else is counted as "other", so ``--collections '*'`` cannot explode the series).
Per-upstream, per-collection event counts are what shows an upstream gone blind to ``fm.plyr.*``
while another still sees it. Backfill and resync count by :class:`~schemas.envelope.Source`, by a
:class:`~ingest.backfill.SyncFailure` or :class:`~ingest.repo_export.ExportFailure` value, and by
collection label; never by DID or PDS host, which are unbounded.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

KNOWN_COLLECTIONS = frozenset(
    {"fm.plyr.track", "fm.plyr.like", "fm.plyr.list", "fm.plyr.comment", "fm.plyr.actor.profile"}
)


def collection_label(nsid: str) -> str:
    """The metric label for a collection: itself if known, else "other"."""
    return nsid if nsid in KNOWN_COLLECTIONS else "other"


class IngestMetrics:
    """The ingest metric families."""

    def __init__(self, registry: CollectorRegistry) -> None:
        ns = "plyr_ingest"
        self.frames = Counter(f"{ns}_frames", "Frames received", ["upstream", "kind"], registry=registry)
        self.events = Counter(f"{ns}_events", "Events produced", ["upstream", "kind", "collection"], registry=registry)
        self.drops = Counter(f"{ns}_drops", "Frames or ops dropped", ["upstream", "reason"], registry=registry)
        self.duplicates = Counter(
            f"{ns}_duplicates",
            "Events skipped as seen from another upstream",
            ["upstream"],
            registry=registry,
        )
        self.reconnects = Counter(f"{ns}_reconnects", "Upstream reconnects", ["upstream"], registry=registry)
        self.cursor_gaps = Counter(
            f"{ns}_cursor_gaps",
            "OutdatedCursor notices (events lost upstream)",
            ["upstream"],
            registry=registry,
        )
        self.error_frames = Counter(
            f"{ns}_error_frames", "Error frames by name", ["upstream", "error"], registry=registry
        )
        self.cursor = Gauge(f"{ns}_cursor", "Last seq received", ["upstream"], registry=registry)
        self.acked_cursor = Gauge(
            f"{ns}_acked_cursor",
            "Last seq whose events the broker acknowledged",
            ["upstream"],
            registry=registry,
        )
        self.lag_seconds = Gauge(
            f"{ns}_lag_seconds", "Now minus the time of the last frame", ["upstream"], registry=registry
        )
        self.halted = Gauge(f"{ns}_halted", "1 while an upstream is halted", ["upstream"], registry=registry)
        self.identities = Counter(
            f"{ns}_identities", "#identity events sent, by what resolution found", ["outcome"], registry=registry
        )
        self.identity_failures = Counter(
            f"{ns}_identity_failures",
            "#identity events sent without a resolved identity, by reason",
            ["reason"],
            registry=registry,
        )
        self.invalid_handles = Counter(
            f"{ns}_invalid_handles",
            "Resolved identities whose handle is not valid, by reason",
            ["reason"],
            registry=registry,
        )
        self.identity_pending = Gauge(
            f"{ns}_identity_pending", "#identity events waiting for resolution or delivery", registry=registry
        )
        self.verify_failures = Counter(
            f"{ns}_verify_failures",
            "Commits of repos in scope not accepted, by the verification rule they failed",
            ["reason"],
            registry=registry,
        )
        self.verdicts = Counter(
            f"{ns}_verdicts",
            "Commits and syncs of repos in scope, by the gate's verdict",
            ["verdict"],
            registry=registry,
        )
        self.repo_requests = Counter(
            f"{ns}_repo_requests", "Backfills and resyncs queued by live ingest, by state", ["state"], registry=registry
        )
        self.held = Gauge(
            f"{ns}_held_frames", "Frames held until their repo's backfill or resync lands", registry=registry
        )
        # Backfill and resync (ingest/backfill.py).
        self.repos_discovered = Counter(
            f"{ns}_repos_discovered", "Repos listReposByCollection found that were not held yet", registry=registry
        )
        self.repo_syncs = Counter(
            f"{ns}_repo_syncs", "Repo exports delivered to the log, by source", ["source"], registry=registry
        )
        self.repo_sync_failures = Counter(
            f"{ns}_repo_sync_failures",
            "Repo exports that failed (and will be retried), by reason",
            ["reason"],
            registry=registry,
        )
        self.repo_records = Counter(
            f"{ns}_repo_records", "Records sent from repo exports", ["collection"], registry=registry
        )
        self.repo_record_drops = Counter(
            f"{ns}_repo_record_drops", "Records of repo exports skipped, by reason", ["reason"], registry=registry
        )
        self.repo_export_bytes = Counter(f"{ns}_repo_export_bytes", "Bytes of repo exports fetched", registry=registry)
        self.repo_rate_limited = Counter(
            f"{ns}_repo_rate_limited", "429 answers from PDSes and the relay", registry=registry
        )
        self.repos_pending = Gauge(f"{ns}_repos_pending", "Repos waiting for a backfill or resync", registry=registry)
