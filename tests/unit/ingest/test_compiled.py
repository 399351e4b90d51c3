"""The compiled-build guard: an extension module of a hot module runs only if it was compiled from the
source beside it, and the build compiles exactly the modules the guard watches."""

from __future__ import annotations

import ast
import hashlib
import importlib.machinery
import json
import re
import shutil
from pathlib import Path

import pytest

import ingest
from ingest import compiled
from ingest.compiled import HOT_MODULES, MANIFEST, StaleBuildError, ensure_current, source_path, stale_modules

PACKAGE = Path(ingest.__file__).resolve().parent
ROOT = PACKAGE.parent
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]
INVERSION, NODE_BYTES, COMMIT_BYTES, CAR = HOT_MODULES


def _file(package: Path, module: str, suffix: str) -> Path:
    return package.joinpath(*module.split(".")[1:]).with_suffix(suffix)


def _copy_sources(tmp: Path) -> Path:
    """An ``ingest`` directory holding the hot modules' real sources, as a build tree would."""
    package = tmp / "ingest"
    for module in HOT_MODULES:
        target = _file(package, module, ".py")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / source_path(module), target)
    return package


def _record(package: Path, modules: tuple[str, ...] = HOT_MODULES) -> None:
    """What setup.py writes after compiling: each compiled source's sha256, keyed by its repo path."""
    digests = {source_path(m): hashlib.sha256(_file(package, m, ".py").read_bytes()).hexdigest() for m in modules}
    (package / MANIFEST).write_text(json.dumps(digests))


def _compile(package: Path, module: str) -> None:
    # The guard reads names and digests only; an extension module's bytes play no part in it.
    _file(package, module, SUFFIX).write_bytes(b"\x7fELF")


def test_a_pure_python_tree_is_current(tmp_path: Path) -> None:
    package = _copy_sources(tmp_path)
    assert stale_modules(package) == []
    ensure_current(package)


def test_modules_compiled_from_the_sources_beside_them_are_current(tmp_path: Path) -> None:
    package = _copy_sources(tmp_path)
    for module in HOT_MODULES:
        _compile(package, module)
    _record(package)
    assert stale_modules(package) == []
    ensure_current(package)


def test_a_source_edited_after_the_compile_is_refused(tmp_path: Path) -> None:
    package = _copy_sources(tmp_path)
    for module in HOT_MODULES:
        _compile(package, module)
    _record(package)
    for module in (INVERSION, CAR):
        with _file(package, module, ".py").open("a") as source:
            source.write("\n# an edit\n")
    assert stale_modules(package) == [INVERSION, CAR]
    with pytest.raises(StaleBuildError, match=re.escape("ingest.verify.inversion, ingest.ipld.car")):
        ensure_current(package)


def test_an_extension_module_without_a_record_is_refused(tmp_path: Path) -> None:
    package = _copy_sources(tmp_path)
    _compile(package, NODE_BYTES)
    assert stale_modules(package) == [NODE_BYTES]
    _record(package, (INVERSION,))
    assert stale_modules(package) == [NODE_BYTES]
    (package / MANIFEST).write_text("not json")
    assert stale_modules(package) == [NODE_BYTES]


def test_an_extension_module_whose_source_is_gone_is_refused(tmp_path: Path) -> None:
    package = _copy_sources(tmp_path)
    _compile(package, COMMIT_BYTES)
    _record(package)
    _file(package, COMMIT_BYTES, ".py").unlink()
    assert stale_modules(package) == [COMMIT_BYTES]


def test_this_package_is_current_and_reports_what_it_imports() -> None:
    ensure_current()
    found = compiled.compiled_modules()
    # Compiled exactly when an extension module sits beside the source (a copy built in place by
    # scripts/compiled-copy); the development tree, an editable install, has none.
    assert found == [m for m in HOT_MODULES if _file(PACKAGE, m, SUFFIX).exists()]


def test_setup_compiles_exactly_the_guarded_modules() -> None:
    tree = ast.parse((ROOT / "setup.py").read_text())
    (hot,) = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "HOT" for t in node.targets)
    ]
    assert ast.literal_eval(hot) == [source_path(m) for m in HOT_MODULES]
