"""Topic names and the key rule.

One topic carries every event kind so a repo's commits, identity and account changes share one
partition and stay in order relative to each other. Retention is unbounded: the log is the source
of truth the read models are rebuilt from.
"""

from __future__ import annotations

DEFAULT_EVENTS_TOPIC = "plyr.index.events.v1"

# Topic configs the event log needs: keep everything forever (operators replay from offset 0).
EVENTS_TOPIC_CONFIG: dict[str, str] = {"retention.ms": "-1", "retention.bytes": "-1"}


def key_for(did: str) -> bytes:
    """The Kafka key of every event of a repo: its DID."""
    return did.encode()
