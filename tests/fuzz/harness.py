"""The fuzz harness: example budgets, and the one rule every target is held to.

A target is called through :func:`attempt` with the exception types it may raise (its module's own
typed errors). Anything else escaping it — IndexError, KeyError, RecursionError, UnicodeDecodeError,
an assertion — fails the test with the input that caused it. Every call is tallied per target and
outcome (``ok`` or the name of the typed error), so a run can report how many inputs each target was
given and what became of them.

Budget: each test names its example count for the normal suite (the whole directory stays well under
a minute on two cores); ``PLYR_FUZZ_SCALE`` multiplies every count (``bench/fuzz.py`` sets it), and
``PLYR_FUZZ_REPORT`` names a JSON file the tally is written to when the session ends.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings

T = TypeVar("T")

SCALE_ENV = "PLYR_FUZZ_SCALE"
REPORT_ENV = "PLYR_FUZZ_REPORT"

# target → outcome → calls
TALLY: defaultdict[str, Counter[str]] = defaultdict(Counter)


def scale() -> float:
    """The multiplier of every example budget (1 in the normal suite)."""
    raw = os.environ.get(SCALE_ENV, "1")
    try:
        value = float(raw)
    except ValueError as err:
        raise ValueError(f"{SCALE_ENV} must be a number, not {raw!r}") from err
    if value <= 0:
        raise ValueError(f"{SCALE_ENV} must be positive")
    return value


def fuzz(examples: int) -> settings:
    """Hypothesis settings for a fuzz test: ``examples`` scaled by ``PLYR_FUZZ_SCALE``, no deadline."""
    return settings(
        max_examples=max(1, round(examples * scale())),
        deadline=None,
        # Seeds are real frames of a few KB, and some strategies build deep or wide values on purpose.
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )


class Refused:
    """What :func:`attempt` returns when the target raised one of its allowed (typed) errors."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def attempt(target: str, allowed: tuple[type[BaseException], ...], fn: Callable[..., T], *args: Any) -> T | Refused:
    """``fn(*args)``: its result, or :class:`Refused` when it raised one of ``allowed``; anything else
    propagates (and fails the test with the input)."""
    try:
        result = fn(*args)
    except allowed as err:
        reason = getattr(err, "reason", None)
        TALLY[target][type(err).__name__ + (f":{reason}" if reason is not None else "")] += 1
        return Refused(err)
    except BaseException:
        TALLY[target]["crash"] += 1
        raise
    TALLY[target]["ok"] += 1
    return result


def note(target: str, outcome: str) -> None:
    """Count one input of ``target`` whose outcome the test classified itself."""
    TALLY[target][outcome] += 1
