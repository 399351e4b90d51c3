"""Which of ingest's hot-path modules run compiled (mypyc), and a guard against stale builds.

Owns :data:`HOT_MODULES` (the modules ``setup.py`` compiles when a wheel is built with ``PLYR_MYPYC=1``:
the commit verification's op inversion, node byte forms and commit block reader, and the CAR reader),
:func:`compiled_modules` (which of them this process imports as extension modules) and
:func:`ensure_current`, which ``ingest/__init__.py`` runs before any of them can be imported.

Why a guard: Python imports an extension module in preference to the ``.py`` beside it, so a compiled
module left next to a source that changed since would run the old code without a word. Every
compiled build writes :data:`MANIFEST` in the package, the sha256 of each source it compiled; an
extension module with no entry there, or whose source no longer has that digest, is stale, and
importing the package refuses to run (our own broken build, not bad input). Editable installs are
never compiled (``setup.py``), so a development tree has no extension modules unless one was built
in place by hand.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
from pathlib import Path
from typing import Final

HOT_MODULES: Final = (
    "ingest.verify.inversion",
    "ingest.verify.node_bytes",
    "ingest.verify.commit_bytes",
    "ingest.ipld.car",
)
MANIFEST: Final = "compiled_sources.json"


class StaleBuildError(RuntimeError):
    """A compiled hot module does not match its source: rebuild it, or delete it."""


def source_path(module: str) -> str:
    """The repo path of a hot module's source, as setup.py and the manifest name it."""
    return module.replace(".", "/") + ".py"


def stale_modules(package: Path) -> list[str]:
    """The hot modules under ``package`` (the ``ingest`` directory) whose extension module was not
    compiled from the source beside it."""
    compiled = []
    listings: dict[Path, set[str]] = {}
    for module in HOT_MODULES:
        *parents, name = module.split(".")[1:]
        directory = package.joinpath(*parents)
        if directory not in listings:
            listings[directory] = set(os.listdir(directory)) if directory.is_dir() else set()
        if any(f"{name}{suffix}" in listings[directory] for suffix in importlib.machinery.EXTENSION_SUFFIXES):
            compiled.append((module, directory / f"{name}.py"))
    if not compiled:
        return []
    try:
        recorded = json.loads((package / MANIFEST).read_text())
    except (OSError, ValueError):
        recorded = {}
    stale = []
    for module, source in compiled:
        digest = recorded.get(source_path(module)) if isinstance(recorded, dict) else None
        if not source.is_file() or hashlib.sha256(source.read_bytes()).hexdigest() != digest:
            stale.append(module)
    return stale


def ensure_current(package: Path | None = None) -> None:
    """Raise StaleBuildError if a compiled hot module under ``package`` (this one) is stale."""
    stale = stale_modules(package or Path(__file__).resolve().parent)
    if stale:
        raise StaleBuildError(
            f"compiled {', '.join(stale)} do not match their sources: rebuild "
            "(PLYR_MYPYC=1 pip install .) or delete the extension modules to run the Python code"
        )


def compiled_modules() -> list[str]:
    """The hot modules this process imports compiled (an extension module rather than the ``.py``)."""
    found = []
    for module in HOT_MODULES:
        spec = importlib.util.find_spec(module)
        origin = spec.origin if spec is not None else None
        if origin is not None and origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
            found.append(module)
    return found
