"""End-to-end fixtures: Bluesky's reference PDS with its PLC (tests/fixtures/pds.py), one per session."""

from __future__ import annotations

from tests.fixtures.pds import pds

__all__ = ["pds"]
