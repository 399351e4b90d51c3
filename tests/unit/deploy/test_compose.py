"""deploy/compose.yaml, rendered the way Compose renders it (YAML merge keys, then ``${VAR:-default}``
interpolation with an empty host environment) and checked against the code: every plyr-index service
runs a real subcommand of the one image, sets only real settings with values the settings classes
accept, serves its health check and metrics where its settings say, and waits for what it needs.
No Docker engine is involved.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.unit.deploy import facts

COMPOSE = facts.DEPLOY / "compose.yaml"
PLYR_IMAGE = re.compile(r"^plyr-index:[\w.-]+$")
_VAR = re.compile(
    r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<bare>[A-Za-z_]\w*))"
)


class Unset(Exception):
    """A required variable (``${VAR:?message}``) is not set."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation of one string: ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-d}``, ``${VAR-d}``,
    ``${VAR:?m}``, ``${VAR?m}``."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("name") or m.group("bare")
        op, arg = m.group("op"), m.group("arg") or ""
        value = env.get(name)
        missing = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":-", "-") and missing:
            return arg
        if op in (":?", "?") and missing:
            raise Unset(f"{name}: {arg}")
        return value or ""

    return _VAR.sub(one, text)


def render(node: Any, env: Mapping[str, str]) -> Any:
    """Interpolate every string of a parsed document (keys are not interpolated, as in Compose)."""
    if isinstance(node, dict):
        return {k: render(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [render(v, env) for v in node]
    if isinstance(node, str):
        return interpolate(node, env)
    return node


def test_interpolation_follows_compose() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("a${SET}b$SET", env) == "axbx"
    assert interpolate("${UNSET:-d} ${EMPTY:-d} ${EMPTY-d} ${SET:-d}", env) == "d d  x"
    assert interpolate("$$HOME and $${SET}", env) == "$HOME and ${SET}"
    with pytest.raises(Unset):
        interpolate("${UNSET:?needed}", env)


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    rendered = render(document, {})
    assert isinstance(rendered, dict)
    return rendered


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose["services"]
    assert isinstance(found, dict)
    return found


@pytest.fixture(scope="module")
def plyr(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The services running the plyr-index image."""
    return {name: s for name, s in services.items() if PLYR_IMAGE.match(str(s.get("image", "")))}


def _by_command(plyr: dict[str, dict[str, Any]], command: str) -> list[tuple[str, dict[str, Any]]]:
    return [(n, s) for n, s in plyr.items() if s["command"][0] == command]


def test_it_renders_with_nothing_set(compose: dict[str, Any]) -> None:
    text = repr(compose)
    assert "${" not in text, "an interpolation was left unrendered"
    assert set(compose) >= {"services", "volumes"}


def test_host_variables_that_look_like_settings_are_settings() -> None:
    """A ``${API_...}`` read from the host must be the setting of that name, not a look-alike."""
    prefixes = tuple({str(c.model_config.get("env_prefix", "")) for c in facts.settings_by_env().values()})
    used = {m.group("name") or m.group("bare") for m in _VAR.finditer(COMPOSE.read_text()) if m.group(0) != "$$"}
    lookalikes = sorted(n for n in used if n.startswith(prefixes) and n not in facts.settings_by_env())
    assert not lookalikes, f"host variables named like settings that are not: {lookalikes}"


def test_the_whole_system_is_there(services: dict[str, dict[str, Any]], plyr: dict[str, dict[str, Any]]) -> None:
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["s3"]["image"].startswith("minio/minio:")
    running = {s["command"][0] for s in plyr.values()}
    assert running >= {"migrate", "ingest", "project", "serve", "mirror"}


def test_one_image_for_every_process(plyr: dict[str, dict[str, Any]]) -> None:
    assert len({s["image"] for s in plyr.values()}) == 1
    for name, service in plyr.items():
        build = service["build"]
        context = (COMPOSE.parent / build["context"]).resolve()
        assert context == facts.ROOT, name
        assert (context / build["dockerfile"]).resolve() == facts.DEPLOY / "Dockerfile", name
        assert "entrypoint" not in service, f"{name}: the image's entrypoint (plyr-index) picks the part"


def test_every_command_is_a_subcommand(plyr: dict[str, dict[str, Any]]) -> None:
    for name, service in plyr.items():
        command = service["command"]
        assert isinstance(command, list) and command, name
        assert command[0] in facts.commands(), f"{name}: plyr-index has no {command[0]!r} command"


def test_every_variable_is_a_real_setting_with_a_value_it_accepts(plyr: dict[str, dict[str, Any]]) -> None:
    known = facts.settings_by_env()
    for name, service in plyr.items():
        env = _env(service)
        unknown = sorted(set(env) - set(known))
        assert not unknown, f"{name} sets variables no settings class reads: {unknown}"
        facts.load_settings(service["command"][0], env)


def test_kafka_runs_in_kraft_mode_where_the_processes_look(
    services: dict[str, dict[str, Any]], plyr: dict[str, dict[str, Any]]
) -> None:
    import base64

    env = _env(services["kafka"])
    assert "controller" in env["KAFKA_PROCESS_ROLES"].split(",")
    assert not any("ZOOKEEPER" in k for k in env)
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16
    node, _, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert node == env["KAFKA_NODE_ID"]
    listeners = dict(item.split("://", 1) for item in env["KAFKA_LISTENERS"].split(","))
    assert voter.rsplit(":", 1)[1] == listeners[env["KAFKA_CONTROLLER_LISTENER_NAMES"]].rsplit(":", 1)[1]
    advertised = {item.split("://", 1)[1] for item in env["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    # The ingester makes the topic with its retention; nothing may create it by accident.
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    for name, service in plyr.items():
        values = facts.load_settings(service["command"][0], _env(service))
        assert values["PLYR_KAFKA_BOOTSTRAP"] in advertised, name
        assert values["PLYR_TOPIC_REPLICATION_FACTOR"] == 1, f"{name}: one broker holds one copy"


def test_the_database_url_names_the_postgres_service(
    services: dict[str, dict[str, Any]], plyr: dict[str, dict[str, Any]]
) -> None:
    pg = _env(services["postgres"])
    for name, service in plyr.items():
        url = urlsplit(str(facts.load_settings(service["command"][0], _env(service))["PLYR_DATABASE_URL"]))
        assert (url.hostname, url.port or 5432) == ("postgres", 5432), name
        assert (url.username, url.password) == (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"]), name
        assert url.path.lstrip("/") == pg["POSTGRES_DB"], name


def test_the_bucket_and_its_keys_match_the_s3_service(
    services: dict[str, dict[str, Any]], plyr: dict[str, dict[str, Any]]
) -> None:
    s3, bucket = _env(services["s3"]), _env(services["s3-bucket"])
    for name, service in _by_command(plyr, "serve") + _by_command(plyr, "mirror"):
        values = facts.load_settings(service["command"][0], _env(service))
        assert values["API_S3_BUCKET"] == bucket["S3_BUCKET"], name
        assert values["API_S3_ACCESS_KEY_ID"] == s3["MINIO_ROOT_USER"] == bucket["S3_ACCESS_KEY"], name
        assert values["API_S3_SECRET_ACCESS_KEY"] == s3["MINIO_ROOT_PASSWORD"] == bucket["S3_SECRET_KEY"], name


def _probe_url(service: dict[str, Any]) -> str:
    found = re.findall(r"https?://[^'\" ]+", " ".join(service["healthcheck"]["test"]))
    assert len(found) == 1, service["healthcheck"]
    return str(found[0])


def test_health_checks_and_ports_match_the_settings(plyr: dict[str, dict[str, Any]]) -> None:
    checked = set()
    for name, service in plyr.items():
        command = service["command"][0]
        if command not in facts.METRICS_PORT_SETTING:
            continue
        values = facts.load_settings(command, _env(service))
        port = values[facts.METRICS_PORT_SETTING[command]]
        # Prometheus scrapes from another container: loopback would hide the endpoint.
        assert values[facts.METRICS_HOST_SETTING[command]] == "0.0.0.0", name
        url = urlsplit(_probe_url(service))
        assert url.port == port, f"{name}: health check on {url.port}, process listens on {port}"
        if command == "serve":
            assert url.path in facts.api_routes() and url.path == "/health", name
            published = [str(p).rsplit(":", 1)[1] for p in service.get("ports", [])]
            assert published == [str(port)], f"{name}: publishes {published}, listens on {port}"
        else:
            assert url.path == "/metrics", name
        checked.add(command)
    assert checked == set(facts.METRICS_PORT_SETTING)


def test_depends_on_is_consistent(services: dict[str, dict[str, Any]], plyr: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for target, rule in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            condition = rule["condition"]
            assert condition in {"service_started", "service_healthy", "service_completed_successfully"}
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target} to be healthy: it has no check"
            if condition == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{target} must be a one-shot for {name} to wait"
    # No cycle.
    seen: dict[str, bool] = {}

    def visit(name: str) -> None:
        assert seen.get(name) is not False, f"depends_on cycle through {name}"
        if name in seen:
            return
        seen[name] = False
        for target in services[name].get("depends_on") or {}:
            visit(target)
        seen[name] = True

    for name in services:
        visit(name)
    (migrate,) = (n for n, _ in _by_command(plyr, "migrate"))
    assert services[migrate]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name, service in plyr.items():
        needs = service.get("depends_on") or {}
        if name != migrate:
            assert needs.get(migrate, {}).get("condition") == "service_completed_successfully", name
        if service["command"][0] in {"ingest", "project", "replay"}:
            assert needs["kafka"]["condition"] == "service_healthy", name


def test_projectors_scale_within_the_partitions(plyr: dict[str, dict[str, Any]]) -> None:
    ((_, projector),) = _by_command(plyr, "project")
    values = facts.load_settings("project", _env(projector))
    replicas = projector["deploy"]["replicas"]
    assert 1 < replicas <= int(str(values["PLYR_TOPIC_PARTITIONS"]))
    ((_, ingest),) = _by_command(plyr, "ingest")
    assert ingest.get("deploy", {}).get("replicas", 1) == 1


def test_named_volumes_are_declared(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for volume in service.get("volumes") or []:
            source = str(volume).split(":", 1)[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in compose["volumes"], f"{name} uses undeclared volume {source}"


def test_prometheus_scrapes_every_process_where_it_serves_metrics(plyr: dict[str, dict[str, Any]]) -> None:
    config = yaml.safe_load((facts.DEPLOY / "prometheus.yml").read_text())
    targets = {
        (name, sd["port"])
        for job in config["scrape_configs"]
        for sd in job.get("dns_sd_configs", [])
        for name in sd["names"]
    }
    assert all(job.get("metrics_path", "/metrics") == "/metrics" for job in config["scrape_configs"])
    expected = set()
    for name, service in plyr.items():
        command = service["command"][0]
        if command in facts.METRICS_PORT_SETTING:
            port = facts.load_settings(command, _env(service))[facts.METRICS_PORT_SETTING[command]]
            expected.add((name, port))
    assert targets == expected


def test_grafana_is_provisioned_with_the_dashboard(services: dict[str, dict[str, Any]]) -> None:
    mounts = [str(v).split(":")[:2] for v in services["grafana"]["volumes"]]
    assert ["./grafana/plyr-index.json", "/var/lib/grafana/dashboards/plyr-index.json"] in mounts
    provider = yaml.safe_load((facts.DEPLOY / "grafana/provisioning/dashboards/plyr-index.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    source = yaml.safe_load((facts.DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    assert urlsplit(source["datasources"][0]["url"]).hostname == "prometheus"
    assert Path(facts.DEPLOY / "grafana" / "plyr-index.json").is_file()
