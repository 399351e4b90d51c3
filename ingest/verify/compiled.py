"""Which modules of the verification hot path run compiled (mypyc), and a guard against stale builds.

Owns :data:`HOT_MODULES` (the modules ``setup.py`` compiles when a wheel is built with ``PLYR_MYPYC=1``),
:func:`compiled_modules` (which of them this process imports as extension modules) and
:func:`ensure_current`, which ``ingest/verify/__init__.py`` runs before any of them is imported.

Why a guard: Python imports an extension module in preference to the ``.py`` beside it, so a compiled
module left next to a source that changed since would run the old code without a word. Every
compiled build writes :data:`MANIFEST` beside the modules, the sha256 of each source it compiled; an
extension module with no manifest entry, or whose source no longer has that digest, is stale, and
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

HOT_MODULES: Final = ("inversion", "node_bytes", "commit_bytes")
MANIFEST: Final = "compiled_sources.json"
_PACKAGE: Final = "ingest.verify"
_MANIFEST_PREFIX: Final = "ingest/verify/"


class StaleBuildError(RuntimeError):
    """A compiled verification module does not match its source: rebuild it, or delete it."""


def _extensions(directory: Path) -> list[str]:
    """The hot modules that have an extension module in ``directory``."""
    names = set(os.listdir(directory))
    return [m for m in HOT_MODULES if any(f"{m}{suffix}" in names for suffix in importlib.machinery.EXTENSION_SUFFIXES)]


def stale_modules(directory: Path) -> list[str]:
    """The hot modules in ``directory`` whose extension module was not compiled from the source beside it."""
    compiled = _extensions(directory)
    if not compiled:
        return []
    try:
        recorded = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        recorded = {}
    stale = []
    for name in compiled:
        source = directory / f"{name}.py"
        digest = recorded.get(f"{_MANIFEST_PREFIX}{name}.py") if isinstance(recorded, dict) else None
        if not source.is_file() or hashlib.sha256(source.read_bytes()).hexdigest() != digest:
            stale.append(name)
    return stale


def ensure_current(directory: Path | None = None) -> None:
    """Raise StaleBuildError if a compiled hot module in ``directory`` (this package) is stale."""
    stale = stale_modules(directory or Path(__file__).resolve().parent)
    if stale:
        raise StaleBuildError(
            f"compiled {', '.join(stale)} in {_PACKAGE} do not match their sources: rebuild "
            "(PLYR_MYPYC=1 pip install .) or delete the extension modules to run the Python code"
        )


def compiled_modules() -> list[str]:
    """The hot modules this process imports compiled (an extension module rather than the ``.py``)."""
    found = []
    for name in HOT_MODULES:
        spec = importlib.util.find_spec(f"{_PACKAGE}.{name}")
        origin = spec.origin if spec is not None else None
        if origin is not None and origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
            found.append(name)
    return found
