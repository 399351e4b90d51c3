"""Capped, jittered exponential backoff that resets after a healthy period.

Used by every reconnect loop (firehose upstreams, broker). "Full jitter" keeps many clients that lost
the same upstream from reconnecting in lockstep.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delay generator: ``next_delay()`` after a failure, ``healthy()`` after a good period."""

    base: float = 0.5
    cap: float = 30.0
    reset_after: float = 60.0
    _attempt: int = field(default=0, init=False)
    _since: float = field(default_factory=time.monotonic, init=False)

    def next_delay(self) -> float:
        """The delay before the next attempt; grows until ``cap``."""
        if time.monotonic() - self._since >= self.reset_after:
            self._attempt = 0
        ceiling = min(self.cap, self.base * (2**self._attempt))
        self._attempt += 1
        self._since = time.monotonic()
        return random.uniform(0, ceiling)

    def healthy(self) -> None:
        """Mark the start of a healthy stretch; a long one resets the growth."""
        self._since = time.monotonic()

    @property
    def attempt(self) -> int:
        """How many delays were handed out since the last reset."""
        return self._attempt
