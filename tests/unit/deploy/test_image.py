"""deploy/Dockerfile and .dockerignore, read as text (no Docker engine here): the image is built from
python:3.11-slim with every package pyproject.toml installs, runs as an unprivileged user, has
``plyr-index`` as its entrypoint with a real subcommand as the default, and sets only real settings.
"""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib

import pytest

from tests.unit.deploy import facts

DOCKERFILE = facts.DEPLOY / "Dockerfile"


@pytest.fixture(scope="module")
def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def _all(instructions: list[tuple[str, str]], word: str) -> list[str]:
    return [rest for w, rest in instructions if w == word]


def _env_keys(instructions: list[tuple[str, str]]) -> set[str]:
    return {m for rest in _all(instructions, "ENV") for m in re.findall(r"([A-Z_][A-Z0-9_]*)=", rest)}


def _packages() -> list[str]:
    config = tomllib.loads((facts.ROOT / "pyproject.toml").read_text())
    return [p.rstrip("*") for p in config["tool"]["setuptools"]["packages"]["find"]["include"]]


def test_it_builds_on_python_311_slim(instructions: list[tuple[str, str]]) -> None:
    (arg,) = _all(instructions, "ARG")
    assert arg == "PYTHON_IMAGE=python:3.11-slim"
    assert _all(instructions, "FROM") == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"]


def test_it_copies_everything_the_package_needs(instructions: list[tuple[str, str]]) -> None:
    copied = {path for rest in _all(instructions, "COPY") if "--from" not in rest for path in rest.split()[:-1]}
    # setup.py: the build compiles the verification hot path with it (PLYR_MYPYC=1 in the Dockerfile).
    needed = {"pyproject.toml", "setup.py", "README.md", *_packages()}
    assert needed <= copied, f"not copied into the build: {sorted(needed - copied)}"
    ignored = [
        line.strip() for line in (facts.ROOT / ".dockerignore").read_text().splitlines() if line.strip()[:1] not in "#"
    ]
    for path in needed:
        hit = [pattern for pattern in ignored if fnmatch.fnmatch(path, pattern.lstrip("/"))]
        assert not hit, f".dockerignore drops {path} ({hit})"


def test_it_runs_plyr_index_as_an_unprivileged_user(instructions: list[tuple[str, str]]) -> None:
    (user,) = _all(instructions, "USER")
    uid, _, gid = user.partition(":")
    assert int(uid) > 0 and int(gid) > 0
    (entrypoint,) = _all(instructions, "ENTRYPOINT")
    assert json.loads(entrypoint) == ["plyr-index"]
    (cmd,) = _all(instructions, "CMD")
    assert json.loads(cmd)[0] in facts.commands()
    # The image was installed as a console script of the project.
    config = tomllib.loads((facts.ROOT / "pyproject.toml").read_text())
    assert "plyr-index" in config["project"]["scripts"]


def test_its_settings_are_real_and_its_ports_are_the_processes(instructions: list[tuple[str, str]]) -> None:
    settings = _env_keys(instructions) - {"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"}
    settings = {k for k in settings if not k.startswith("PIP_")}
    assert settings <= set(facts.settings_by_env()), sorted(settings - set(facts.settings_by_env()))
    # Loopback would make the API and the metrics unreachable from outside the container.
    assert settings >= set(facts.METRICS_HOST_SETTING.values())
    (exposed,) = _all(instructions, "EXPOSE")
    expected = {facts.default(name) for name in facts.METRICS_PORT_SETTING.values()}
    assert {int(p) for p in exposed.split()} == expected
