"""The index's XRPC queries, one module per area; :func:`register_all` serves them all."""

from __future__ import annotations

from fastapi import APIRouter

from api.queries import activity, artists, lists, search, totals, tracks


def register_all(router: APIRouter) -> None:
    """Add every query route to ``router``."""
    for module in (tracks, artists, lists, activity, search, totals):
        module.register(router)
