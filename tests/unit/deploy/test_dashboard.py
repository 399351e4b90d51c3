"""deploy/grafana/plyr-index.json: a well-formed Grafana dashboard whose every query names metrics the
processes really register, with labels those metrics really have, for each of the ingester, the
projector and the API. (That every metric is *documented* is docs/operators.md's test.)
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.unit.deploy import facts

DASHBOARD = facts.DEPLOY / "grafana" / "plyr-index.json"
METRIC = re.compile(r"\bplyr_[a-z0-9_]+\b")
SELECTOR = re.compile(r"\{([^}]*)\}")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
# Labels Prometheus adds to every series, and the histogram bucket label.
TARGET_LABELS = {"instance", "job", "le"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    document = json.loads(DASHBOARD.read_text())
    assert isinstance(document, dict)
    return document


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in _panels(dashboard) for t in p["targets"]]


def test_it_is_a_grafana_dashboard(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "plyr-index" and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    (variable,) = dashboard["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == ("datasource", "datasource", "prometheus")
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in _panels(dashboard):
        assert panel["title"] and panel["type"] in {"timeseries", "stat"}, panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]


def test_panels_fit_the_grid_without_overlapping(dashboard: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


def test_every_queried_metric_exists_with_the_labels_used(dashboard: dict[str, Any]) -> None:
    exposed = facts.exposed_metrics()
    for expr in _exprs(dashboard):
        names = METRIC.findall(expr)
        assert names, f"queries no plyr metric: {expr}"
        unknown = [n for n in names if n not in exposed]
        assert not unknown, f"no process exports {unknown} ({expr})"
        labels = {label for n in names for label in exposed[n].labels} | TARGET_LABELS
        used = {m.split("=")[0].strip().rstrip("!~") for s in SELECTOR.findall(expr) for m in s.split(",") if m}
        used |= {label.strip() for g in GROUPING.findall(expr) for label in g.split(",") if label.strip()}
        assert used <= labels, f"labels {sorted(used - labels)} are not on {names} ({expr})"
        for legend in re.findall(r"\{\{(\w+)\}\}", " ".join(_legends(dashboard, expr))):
            assert legend in labels, f"legend {{{{{legend}}}}} is not a label of {names}"


def _legends(dashboard: dict[str, Any], expr: str) -> list[str]:
    return [t.get("legendFormat", "") for p in _panels(dashboard) for t in p["targets"] if t["expr"] == expr]


def test_every_process_is_on_the_dashboard(dashboard: dict[str, Any]) -> None:
    exposed = facts.exposed_metrics()
    queried = {name for expr in _exprs(dashboard) for name in METRIC.findall(expr)}
    assert {exposed[name].process for name in queried} == {f.process for f in facts.metric_families()}
