"""What the code really offers, read from the code itself, for the deploy and docs tests: the settings
(environment variables and their classes), the ``plyr-index`` subcommands, the API's routes, and every
Prometheus metric family each process registers. Nothing here is a hand-kept list.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase
from pydantic_settings import BaseSettings

from api.app import create_app
from api.mirror import MirrorMetrics
from api.settings import ApiSettings
from ingest.metrics import IngestMetrics
from ingest.settings import IngestSettings
from plyr_index.cli import COMMANDS
from projector.metrics import ProjectorMetrics
from projector.settings import ProjectorSettings
from runtime.settings import PlatformSettings

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"

# The settings class each subcommand reads besides PlatformSettings (None: only the shared ones).
PART_SETTINGS: dict[str, type[BaseSettings] | None] = {
    "ingest": IngestSettings,
    "capture": IngestSettings,
    "project": ProjectorSettings,
    "replay": ProjectorSettings,
    "serve": ApiSettings,
    "mirror": ApiSettings,
    "migrate": None,
    "up": None,
}
# What each subcommand serves /metrics on: the port setting's name (the API serves it on its own port).
METRICS_PORT_SETTING = {
    "ingest": "INGEST_METRICS_PORT",
    "project": "PROJECTOR_METRICS_PORT",
    "serve": "API_PORT",
    "mirror": "API_MIRROR_METRICS_PORT",
}
METRICS_HOST_SETTING = {
    "ingest": "INGEST_METRICS_HOST",
    "project": "PROJECTOR_METRICS_HOST",
    "serve": "API_HOST",
    "mirror": "API_MIRROR_METRICS_HOST",
}


def settings_table_script() -> ModuleType:
    """scripts/settings_table.py, imported from its path (scripts/ is not a package)."""
    name = "plyr_settings_table"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / "settings_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@cache
def settings_by_env() -> dict[str, type[BaseSettings]]:
    """Every environment variable a settings class reads → that class."""
    script = settings_table_script()
    return {s.name: s.cls for s in script.settings()}


def commands() -> set[str]:
    """The ``plyr-index`` subcommands (plyr_index/cli.py)."""
    return set(COMMANDS)


def default(env_name: str) -> object:
    """The default value of a setting."""
    cls = settings_by_env()[env_name]
    prefix = str(cls.model_config.get("env_prefix", ""))
    return cls.model_fields[env_name[len(prefix) :].lower()].default


@contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """Run with exactly ``env`` as the project's settings environment (every other PLYR_/INGEST_/
    PROJECTOR_/API_ variable removed for the duration)."""
    prefixes = tuple({str(c.model_config.get("env_prefix", "")) for c in settings_by_env().values()})
    saved = {k: v for k, v in os.environ.items() if k.startswith(prefixes)}
    for key in saved:
        del os.environ[key]
    os.environ.update(env)
    try:
        yield
    finally:
        for key in env:
            os.environ.pop(key, None)
        os.environ.update(saved)


def load_settings(command: str, env: Mapping[str, str]) -> dict[str, object]:
    """Validate ``env`` as the settings of ``command`` would (raises pydantic's ValidationError);
    return every setting's effective value by environment variable name."""
    classes: list[type[BaseSettings]] = [PlatformSettings]
    part = PART_SETTINGS[command]
    if part is not None:
        classes.append(part)
    values: dict[str, object] = {}
    with environment(env):
        for cls in classes:
            prefix = str(cls.model_config.get("env_prefix", ""))
            loaded = cls()
            for field in cls.model_fields:
                values[f"{prefix}{field}".upper()] = getattr(loaded, field)
    return values


def _paths(routes: Iterable[object]) -> Iterator[str]:
    for route in routes:
        path = getattr(route, "path", None)
        if isinstance(path, str):
            yield path
        # FastAPI ≥ 0.16x keeps an included router as one entry holding the original router.
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _paths(included.routes)


@cache
def full_api(registry: CollectorRegistry) -> FastAPI:
    """The API app with every route and metric, the admin API's included (served when API_ADMIN_TOKEN is
    set); create_app builds them without opening the pool or the broker."""
    settings = ApiSettings(admin_token="an-admin-token-for-the-facts")
    return create_app("postgresql://unused@127.0.0.1/unused", settings, registry, platform=PlatformSettings())


def api_routes() -> frozenset[str]:
    """The API's route paths, included routers' too."""
    return frozenset(_paths(full_api(CollectorRegistry()).routes))


@dataclass(frozen=True)
class Family:
    """One metric family as a process registers it."""

    name: str
    type: str
    labels: tuple[str, ...]
    process: str

    def exposed(self) -> set[str]:
        """The sample names Prometheus scrapes for it."""
        if self.type == "counter":
            return {f"{self.name}_total", f"{self.name}_created"}
        if self.type == "histogram":
            return {f"{self.name}_{s}" for s in ("bucket", "sum", "count", "created")}
        if self.type == "summary":
            return {self.name, f"{self.name}_sum", f"{self.name}_count", f"{self.name}_created"}
        return {self.name}


def _families(registry: CollectorRegistry, process: str) -> list[Family]:
    # prometheus_client has no public way to list a registry's collectors with their label names.
    found = []
    for collector in registry._collector_to_names:
        assert isinstance(collector, MetricWrapperBase), collector
        assert collector._type is not None, collector
        found.append(Family(collector._name, collector._type, tuple(collector._labelnames), process))
    return found


@cache
def metric_families() -> tuple[Family, ...]:
    """Every metric family the ingester, the projector, the API and the mirror register."""
    ingest, projector, api, mirror = CollectorRegistry(), CollectorRegistry(), CollectorRegistry(), CollectorRegistry()
    IngestMetrics(ingest)
    ProjectorMetrics(projector)
    MirrorMetrics(mirror)
    app = full_api(api)
    # Middleware (the per-route metrics) is built on the first request; build it now.
    app.middleware_stack = app.build_middleware_stack()
    return tuple(
        _families(ingest, "ingest")
        + _families(projector, "projector")
        + _families(api, "api")
        + _families(mirror, "mirror")
    )


def exposed_metrics() -> dict[str, Family]:
    """Every scraped sample name → its family."""
    return {name: f for f in metric_families() for name in f.exposed()}
