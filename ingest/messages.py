"""Typed ``com.atproto.sync.subscribeRepos`` messages built from a decoded frame body.

Only the shape is checked here (types of the fields this index reads); identifier syntax and record
content are checked in :mod:`ingest.normalize`. Messages are slotted dataclasses rather than pydantic
models because one is built for every frame on the hot path (≥99% of which are then filtered out).
CID fields hold raw binary CIDs, as libipld returns them.

Spec: atproto.com/specs/event-stream, atproto.com/specs/sync (Sync 1.1: ``prevData``, op ``prev``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ingest.frames import MessageFrame


class MessageError(ValueError):
    """A known message kind whose body does not have the lexicon's shape."""


@dataclass(frozen=True, slots=True)
class RepoOp:
    """One op of a commit: ``path`` is ``collection/rkey``; ``cid`` is None for deletes."""

    action: str
    path: str
    cid: bytes | None
    prev: bytes | None


@dataclass(frozen=True, slots=True)
class Commit:
    """``#commit``: a signed repo commit with the CAR slice of what changed."""

    seq: int
    repo: str
    rev: str
    since: str | None
    commit: bytes
    blocks: bytes
    ops: tuple[RepoOp, ...]
    prev_data: bytes | None
    time: str


@dataclass(frozen=True, slots=True)
class Sync:
    """``#sync``: the repo's current commit, declared without a diff."""

    seq: int
    did: str
    rev: str
    blocks: bytes
    time: str


@dataclass(frozen=True, slots=True)
class Identity:
    """``#identity``: the DID document or handle may have changed."""

    seq: int
    did: str
    handle: str | None
    time: str


@dataclass(frozen=True, slots=True)
class Account:
    """``#account``: hosting status changed."""

    seq: int
    did: str
    active: bool
    status: str | None
    time: str


@dataclass(frozen=True, slots=True)
class Info:
    """``#info``: informational (``OutdatedCursor``); carries no seq."""

    name: str
    message: str | None


Message = Commit | Sync | Identity | Account | Info


def _req(body: dict[str, Any], key: str, typ: type) -> Any:
    value = body.get(key)
    # The exact type first: what a decoder returns, and one test (a field is read for every message).
    if type(value) is typ:
        return value
    # bool is an int subclass; a seq of True is as wrong as a seq of "1".
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise MessageError(f"field {key!r} must be {typ.__name__}, got {type(value).__name__}")
    return value


def _opt(body: dict[str, Any], key: str, typ: type) -> Any:
    value = body.get(key)
    if value is None or type(value) is typ:
        return value
    if not isinstance(value, typ):
        raise MessageError(f"field {key!r} must be {typ.__name__} or null, got {type(value).__name__}")
    return value


def _ops(raw: Any) -> tuple[RepoOp, ...]:
    if not isinstance(raw, list):
        raise MessageError("field 'ops' must be a list")
    ops = []
    for item in raw:
        if not isinstance(item, dict):
            raise MessageError("an op must be a map")
        ops.append(
            RepoOp(
                action=_req(item, "action", str),
                path=_req(item, "path", str),
                cid=_opt(item, "cid", bytes),
                prev=_opt(item, "prev", bytes),
            )
        )
    return tuple(ops)


def commit_in_scope(body: dict[str, Any], matches: Callable[[str], bool]) -> bool:
    """Whether any op of a raw ``#commit`` body touches a collection ``matches`` accepts.

    Runs before :func:`parse_message` so the ≥99% of commits that are out of scope are never typed;
    it checks only the shape it reads (ops is a list of maps with a string path).
    """
    ops = body.get("ops")
    if not isinstance(ops, list):
        raise MessageError("field 'ops' must be a list")
    for op in ops:
        path = op.get("path") if isinstance(op, dict) else None
        if not isinstance(path, str):
            raise MessageError("an op must be a map with a string path")
        if matches(path.partition("/")[0]):
            return True
    return False


def parse_message(frame: MessageFrame) -> Message:
    """Build the typed message for a known kind; raise MessageError on a wrong shape."""
    body = frame.body
    t = frame.t
    if t == "#commit":
        return Commit(
            seq=_req(body, "seq", int),
            repo=_req(body, "repo", str),
            rev=_req(body, "rev", str),
            since=_opt(body, "since", str),
            commit=_req(body, "commit", bytes),
            blocks=_req(body, "blocks", bytes),
            ops=_ops(body.get("ops")),
            prev_data=_opt(body, "prevData", bytes),
            time=_req(body, "time", str),
        )
    if t == "#identity":
        return Identity(
            seq=_req(body, "seq", int),
            did=_req(body, "did", str),
            handle=_opt(body, "handle", str),
            time=_req(body, "time", str),
        )
    if t == "#account":
        return Account(
            seq=_req(body, "seq", int),
            did=_req(body, "did", str),
            active=_req(body, "active", bool),
            status=_opt(body, "status", str),
            time=_req(body, "time", str),
        )
    if t == "#sync":
        return Sync(
            seq=_req(body, "seq", int),
            did=_req(body, "did", str),
            rev=_req(body, "rev", str),
            blocks=_req(body, "blocks", bytes),
            time=_req(body, "time", str),
        )
    if t == "#info":
        return Info(name=_req(body, "name", str), message=_opt(body, "message", str))
    raise MessageError(f"no parser for kind {t!r}")
