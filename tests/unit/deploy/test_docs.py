"""docs/operators.md cannot drift from the code: its settings table is what scripts/settings_table.py
generates from the settings classes (every row described), its metrics table lists exactly the metric
families the processes register (type and labels included), and every setting, metric, command and
repository path its prose names exists. The README links to it.
"""

from __future__ import annotations

import re

import pytest

from tests.unit.deploy import facts

GUIDE = facts.ROOT / "docs" / "operators.md"
METRICS_START, METRICS_END = "<!-- metrics-table:start -->", "<!-- metrics-table:end -->"


@pytest.fixture(scope="module")
def guide() -> str:
    return GUIDE.read_text()


def _code(text: str) -> str:
    """The code blocks and inline code spans of a Markdown text, joined."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.M | re.S)
    rest = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.M | re.S)
    return "\n".join(blocks + re.findall(r"`([^`\n]+)`", rest))


def test_the_settings_table_is_generated_from_the_classes(guide: str) -> None:
    script = facts.settings_table_script()
    assert guide == script.rewrite(guide), (
        "docs/operators.md's settings table is out of date: run"
        " `python scripts/settings_table.py --write docs/operators.md` and describe any new row"
    )
    described = script.meanings(guide)
    assert set(described) == set(facts.settings_by_env())
    undescribed = sorted(name for name, meaning in described.items() if meaning in ("", script.TODO))
    assert not undescribed, f"settings without a meaning: {undescribed}"


def test_the_generated_table_follows_the_classes() -> None:
    script = facts.settings_table_script()
    rows = {s.name: s for s in script.settings()}
    assert rows["PLYR_KAFKA_IDEMPOTENCE"].default == "`auto`"
    assert rows["API_PORT"].default == "`8080`"
    assert rows["API_S3_BUCKET"].default == "(none)"
    assert rows["INGEST_UPSTREAMS"].default == "`wss://bsky.network`"
    # The shared settings come first, then each part's.
    assert next(iter(rows)).startswith("PLYR_")
    table = script.render({"API_PORT": "the port"})
    assert "| `API_PORT` | `8080` | the port |" in table
    assert f"| `API_HOST` | `127.0.0.1` | {script.TODO} |" in table


def test_the_metrics_table_is_every_metric_the_code_registers(guide: str) -> None:
    assert METRICS_START in guide and METRICS_END in guide
    table = guide.split(METRICS_START, 1)[1].split(METRICS_END, 1)[0]
    documented = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`"):
            name, kind, labels, meaning = cells
            assert meaning, f"{name} has no meaning"
            name = name.strip("`")
            if kind == "counter":
                assert name.endswith("_total"), f"{name}: a counter is scraped as <name>_total"
                name = name.removesuffix("_total")
            documented[name] = (kind, tuple(sorted(label.strip() for label in labels.split(",") if label.strip())))
    registered = {f.name: (f.type, tuple(sorted(f.labels))) for f in facts.metric_families()}
    missing = sorted(set(registered) - set(documented))
    gone = sorted(set(documented) - set(registered))
    assert not missing, f"metrics the guide does not explain: {missing}"
    assert not gone, f"metrics the guide explains that no process registers: {gone}"
    wrong = {n: (documented[n], registered[n]) for n in registered if documented[n] != registered[n]}
    assert not wrong, f"type or labels differ (guide, code): {wrong}"


def test_what_the_prose_names_exists(guide: str) -> None:
    code = _code(guide)
    settings = set(re.findall(r"\b((?:PLYR|INGEST|PROJECTOR|API)_[A-Z0-9_]*[A-Z0-9])\b", code))
    assert settings, "the guide names no setting"
    assert settings <= set(facts.settings_by_env()), sorted(settings - set(facts.settings_by_env()))
    # "plyr-index <command>", not the namespace in "kubectl -n plyr-index logs".
    commands = set(re.findall(r"(?<!-n )(?<![\w/-])plyr-index ([a-z]+(?:-[a-z]+)*)\b", code))
    assert commands <= facts.commands(), sorted(commands - facts.commands())
    assert {"replay", "migrate", "ingest", "project", "serve"} <= commands
    exposed = facts.exposed_metrics()
    metrics = set(re.findall(r"\bplyr_[a-z0-9_]+\b", code)) - {"plyr_ingest", "plyr_read", "plyr_index"}
    metrics = {m for m in metrics if not m.startswith("plyr_read_")}
    unknown = sorted(m for m in metrics if m not in exposed and m not in {f.name for f in facts.metric_families()})
    assert not unknown, f"the guide names metrics no process exports: {unknown}"
    paths = set(re.findall(r"\b((?:deploy|docs|scripts)/[\w./-]*[\w])", code))
    missing = sorted(p for p in paths if not (facts.ROOT / p).exists())
    assert not missing, f"the guide names files that do not exist: {missing}"
    routes = set(re.findall(r"GET (/[\w./{}*-]+)", code))
    assert {"/health", "/ready", "/metrics"} <= routes
    unknown = sorted(
        r
        for r in routes
        if not (r.endswith("*") and any(p.startswith(r[:-1]) for p in facts.api_routes()))
        and r not in facts.api_routes()
    )
    assert not unknown, f"the guide names routes the API does not serve: {unknown}"


def test_the_readme_links_the_guide() -> None:
    readme = (facts.ROOT / "README.md").read_text()
    assert "](docs/operators.md)" in readme
