"""deploy/k8s: every manifest parses into objects with their required fields, the kustomization lists
them all, and they agree with the code: each container runs a real ``plyr-index`` subcommand of the
one image, reads only real settings with values the settings classes accept, and is probed and
served on the ports and paths the processes really use (/health, /ready, /metrics). The ingester is
one, projectors are one consumer group within the partitions, the API sits behind its Service.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.unit.deploy import facts

K8S = facts.DEPLOY / "k8s"
API_VERSIONS = {
    "Namespace": "v1",
    "ConfigMap": "v1",
    "Secret": "v1",
    "Service": "v1",
    "Deployment": "apps/v1",
    "Job": "batch/v1",
    "PodDisruptionBudget": "policy/v1",
    "HorizontalPodAutoscaler": "autoscaling/v2",
}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _documents() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every object of deploy/k8s and of the on-demand kustomizations under it (deploy/k8s/replay)."""
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                yield str(path.relative_to(K8S)), doc


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for _, doc in _documents():
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in found, f"{key} defined twice"
        found[key] = doc
    return found


def _of(objects: dict[tuple[str, str], dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {name: doc for (k, name), doc in objects.items() if k == kind}


def _workloads(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {**_of(objects, "Deployment"), **_of(objects, "Job")}


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def _env(objects: dict[tuple[str, str], dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """The environment the container gets: envFrom (ConfigMap data, Secret stringData), then env."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(objects[("ConfigMap", source["configMapRef"]["name"])]["data"])
        else:
            env.update(objects[("Secret", source["secretRef"]["name"])]["stringData"])
    for item in container.get("env", []):
        env[item["name"]] = item["value"]
    return {k: str(v) for k, v in env.items()}


def _by_command(objects: dict[tuple[str, str], dict[str, Any]], command: str) -> dict[str, Any]:
    (found,) = [w for w in _workloads(objects).values() if _container(w)["args"][0] == command]
    return found


def _labels(workload: dict[str, Any]) -> Any:
    return workload["spec"]["template"]["metadata"]["labels"].items()


def _port(container: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's port (a number or a container port's name) as a number."""
    by_name = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    return int(by_name[port]) if isinstance(port, str) else port


def test_every_object_has_its_required_fields() -> None:
    seen = 0
    for path, doc in _documents():
        kind = doc.get("kind")
        assert kind in API_VERSIONS, f"{path}: unexpected kind {kind!r}"
        assert doc.get("apiVersion") == API_VERSIONS[kind], f"{path}: {kind} is {API_VERSIONS[kind]}"
        assert DNS_LABEL.match(doc["metadata"]["name"]), f"{path}: bad name"
        if kind in {"Deployment", "Job"}:
            template = doc["spec"]["template"]
            assert template["spec"]["containers"], path
            if kind == "Deployment":
                selector = doc["spec"]["selector"]["matchLabels"]
                labels = template["metadata"]["labels"]
                assert selector and selector.items() <= labels.items(), f"{path}: selector does not match the pods"
            else:
                assert template["spec"]["restartPolicy"] in {"OnFailure", "Never"}, path
        seen += 1
    assert seen >= 9


def test_each_kustomization_lists_every_manifest_beside_it() -> None:
    kustomizations = sorted(K8S.rglob("kustomization.yaml"))
    assert [k.parent for k in kustomizations] == [K8S, K8S / "replay"]
    namespaces = set()
    for path in kustomizations:
        kustomization = yaml.safe_load(path.read_text())
        listed = set(kustomization["resources"])
        present = {p.name for p in path.parent.glob("*.yaml")} - {"kustomization.yaml"}
        assert listed == present, path
        assert [(i["name"], i["newTag"]) for i in kustomization["images"]] == [("plyr-index", _image_tag())], path
        namespaces.add(kustomization["namespace"])
    (namespace,) = namespaces
    assert yaml.safe_load((K8S / "namespace.yaml").read_text())["metadata"]["name"] == namespace


def _image_tag() -> str:
    """The tag compose builds by default (``plyr-index:${IMAGE_TAG:-TAG}``)."""
    compose = yaml.safe_load((facts.DEPLOY / "compose.yaml").read_text())
    (tag,) = re.findall(r"^plyr-index:\$\{IMAGE_TAG:-([\w.-]+)\}$", compose["x-plyr-image"]["image"])
    return str(tag)


def test_one_image_running_real_subcommands(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    image = f"plyr-index:{_image_tag()}"
    commands = set()
    for name, workload in _workloads(objects).items():
        container = _container(workload)
        assert container["image"] == image, name
        assert "command" not in container, f"{name}: the image's entrypoint (plyr-index) picks the part"
        assert container["args"][0] in facts.commands(), f"{name}: no plyr-index {container['args'][0]!r}"
        commands.add(container["args"][0])
    assert commands >= {"migrate", "ingest", "project", "serve", "mirror", "replay"}


def test_configuration_is_only_real_settings(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    known = set(facts.settings_by_env())
    for kind, field in (("ConfigMap", "data"), ("Secret", "stringData")):
        for name, doc in _of(objects, kind).items():
            unknown = sorted(set(doc[field]) - known)
            assert not unknown, f"{kind} {name} holds variables no settings class reads: {unknown}"
    for name, workload in _workloads(objects).items():
        container = _container(workload)
        for source in container.get("envFrom", []):
            ref = source.get("configMapRef") or source.get("secretRef")
            kind = "ConfigMap" if "configMapRef" in source else "Secret"
            assert (kind, ref["name"]) in objects, f"{name}: no {kind} {ref['name']}"
        env = _env(objects, container)
        assert set(env) <= known, f"{name}: {sorted(set(env) - known)}"
        facts.load_settings(container["args"][0], env)


def test_the_ingester_is_one(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    ingest = _by_command(objects, "ingest")
    assert ingest["spec"]["replicas"] == 1
    # A rolling update would run two ingesters at once for a while.
    assert ingest["spec"]["strategy"]["type"] == "Recreate"


def test_projectors_are_one_group_within_the_partitions(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    projector = _by_command(objects, "project")
    values = facts.load_settings("project", _env(objects, _container(projector)))
    assert 1 < projector["spec"]["replicas"] <= int(str(values["PLYR_TOPIC_PARTITIONS"]))
    assert values["PROJECTOR_GROUP_ID"], "one consumer group for every replica"
    # A production cluster keeps more than one copy of the log.
    assert int(str(values["PLYR_TOPIC_REPLICATION_FACTOR"])) >= 3
    (budget,) = _of(objects, "PodDisruptionBudget").values()
    assert budget["spec"]["selector"]["matchLabels"] == projector["spec"]["selector"]["matchLabels"]


def test_the_api_is_behind_its_service_with_real_probes(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    api = _by_command(objects, "serve")
    container = _container(api)
    values = facts.load_settings("serve", _env(objects, container))
    assert values["API_HOST"] == "0.0.0.0"
    port = values["API_PORT"]
    assert [p["containerPort"] for p in container["ports"]] == [port]
    ready, live = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
    assert (ready["path"], live["path"]) == ("/ready", "/health")
    assert {ready["path"], live["path"]} <= facts.api_routes()
    assert _port(container, ready["port"]) == _port(container, live["port"]) == port
    (service,) = [s for s in _of(objects, "Service").values() if s["spec"]["selector"].items() <= _labels(api)]
    assert service["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]
    (service_port,) = service["spec"]["ports"]
    assert _port(container, service_port["targetPort"]) == port
    (hpa,) = _of(objects, "HorizontalPodAutoscaler").values()
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", api["metadata"]["name"])
    assert 1 < hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_metrics_are_served_and_scraped_where_the_settings_say(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    for command, setting in facts.METRICS_PORT_SETTING.items():
        workload = _by_command(objects, command)
        container = _container(workload)
        values = facts.load_settings(command, _env(objects, container))
        port = values[setting]
        assert values[facts.METRICS_HOST_SETTING[command]] == "0.0.0.0", command
        assert port in [p["containerPort"] for p in container["ports"]], command
        notes = workload["spec"]["template"]["metadata"]["annotations"]
        assert (notes["prometheus.io/port"], notes["prometheus.io/path"]) == (str(port), "/metrics"), command
        if command != "serve":
            probe = container["livenessProbe"]["httpGet"]
            assert (_port(container, probe["port"]), probe["path"]) == (port, "/metrics"), command


def test_containers_run_as_the_images_unprivileged_user(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    dockerfile = (facts.DEPLOY / "Dockerfile").read_text()
    (user,) = re.findall(r"^USER (\d+):\d+$", dockerfile, re.M)
    for name, workload in _workloads(objects).items():
        pod = workload["spec"]["template"]["spec"]["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] == int(user), name
        container = _container(workload)["securityContext"]
        assert container["allowPrivilegeEscalation"] is False, name
        assert container["readOnlyRootFilesystem"] is True, name
