"""The pipeline status (:mod:`api.status`) as one screen of text, for ``plyr-index status`` (pure)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from api.status import OK, Status


def _ago(iso: str, now: datetime) -> str:
    seconds = max((now - datetime.fromisoformat(iso.replace("Z", "+00:00"))).total_seconds(), 0)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    if seconds < 172_800:
        return f"{seconds / 3600:.0f}h ago"
    return f"{seconds / 86400:.0f}d ago"


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _head(title: str, section: dict[str, Any]) -> list[str]:
    state = section.get("state", OK)
    line = title if state == OK else f"{title}: {state}"
    out = [line]
    if section.get("note"):
        out.append(f"  ({section['note']})")
    return out


def render(status: Status) -> str:
    """The status as one screen of text."""
    now = datetime.fromisoformat(status["generatedAt"].replace("Z", "+00:00"))
    lines = [f"plyr-index status  {status['generatedAt']}  schema {status['schema']}"]
    db = status["database"]
    lines.append("database: reachable" if db["reachable"] else f"database: UNREACHABLE ({db.get('error')})")

    lines += ["", *_head("upstreams", status["upstreams"])]
    cursors = status["upstreams"]["cursors"]
    if cursors:
        lines += _table(
            [["upstream", "seq", "saved", ""]]
            + [
                [
                    c["upstream"],
                    str(c.get("seq", "-")),
                    _ago(c["savedAt"], now),
                    f"HALTED: {c['halted']}" if "halted" in c else "",
                ]
                for c in cursors
            ]
        )
    elif status["upstreams"]["state"] == OK:
        lines.append("  no cursor saved yet")

    repos = status["repos"]
    lines += ["", *_head(f"repos ({repos['total']})" if repos["state"] == OK else "repos", repos)]
    if repos["byState"]:
        lines.append("  " + "   ".join(f"{s['state']} {s['count']}" for s in repos["byState"]))

    broker = status["broker"]
    lines += ["", *_head(f"broker {broker['bootstrap']}  topic {broker['topic']}", broker)]
    if broker["partitions"]:
        rows = [["partition", "end offset", "projected", "lag"]]
        for p in broker["partitions"]:
            rows.append([str(p["partition"]), *(str(p.get(k, "-")) for k in ("endOffset", "projected", "lag"))])
        lines += _table(rows)
    if "totalLag" in broker:
        lines.append(f"  total lag: {broker['totalLag']} message(s)")

    projectors = status["projectors"]
    lines += ["", *_head("projectors", projectors)]
    if projectors["members"]:
        lines += _table(
            [["member", "lag", "last seen", ""]]
            + [
                [m["member"], f"{m['lagMs'] / 1000:.1f}s", _ago(m["lastSeen"], now), "" if m["running"] else "stale"]
                for m in projectors["members"]
            ]
        )
    elif projectors["state"] == OK:
        lines.append("  none running")

    dead = status["deadLetters"]
    lines += ["", *_head(f"dead letters: {dead['total']}" if dead["state"] == OK else "dead letters", dead)]
    if dead["topReasons"]:
        lines += _table([[str(r["count"]), r["reason"][:100]] for r in dead["topReasons"]])

    rates = status.get("rates")
    if rates is not None:
        window = rates["windowSeconds"]
        lines += ["", *_head(f"applied in the last {window}s (per second)", rates)]
        if rates["byCollection"]:
            lines += _table([[r["collection"], f"{r['count'] / max(window, 1):.1f}/s"] for r in rates["byCollection"]])
        elif rates["state"] == OK:
            lines.append("  nothing")

    api = status["api"]
    lines += ["", f"api {api['url']}", f"  health {api['health']}   ready {api['ready']}"]
    if api.get("detail"):
        lines.append(f"  ({api['detail']})")
    return "\n".join(lines) + "\n"
