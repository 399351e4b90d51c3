"""The compiled-build guard: an extension module of a hot verification module runs only if it was
compiled from the source beside it, and the build compiles exactly the modules the guard watches."""

from __future__ import annotations

import ast
import hashlib
import importlib.machinery
import json
import shutil
from pathlib import Path

import pytest

from ingest.verify import compiled
from ingest.verify.compiled import HOT_MODULES, MANIFEST, StaleBuildError, ensure_current, stale_modules

PACKAGE = Path(compiled.__file__).resolve().parent
ROOT = PACKAGE.parents[1]
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def _copy_sources(tmp: Path) -> Path:
    """A package directory holding the hot modules' real sources, as a build tree would."""
    directory = tmp / "verify"
    directory.mkdir()
    for name in HOT_MODULES:
        shutil.copy(PACKAGE / f"{name}.py", directory / f"{name}.py")
    return directory


def _record(directory: Path, names: tuple[str, ...] = HOT_MODULES) -> None:
    """What setup.py writes after compiling: each compiled source's sha256, keyed by its repo path."""
    digests = {f"ingest/verify/{n}.py": hashlib.sha256((directory / f"{n}.py").read_bytes()).hexdigest() for n in names}
    (directory / MANIFEST).write_text(json.dumps(digests))


def _compile(directory: Path, name: str) -> None:
    # The guard reads names and digests only; an extension module's bytes play no part in it.
    (directory / f"{name}{SUFFIX}").write_bytes(b"\x7fELF")


def test_a_pure_python_tree_is_current(tmp_path: Path) -> None:
    directory = _copy_sources(tmp_path)
    assert stale_modules(directory) == []
    ensure_current(directory)


def test_modules_compiled_from_the_sources_beside_them_are_current(tmp_path: Path) -> None:
    directory = _copy_sources(tmp_path)
    for name in HOT_MODULES:
        _compile(directory, name)
    _record(directory)
    assert stale_modules(directory) == []
    ensure_current(directory)


def test_a_source_edited_after_the_compile_is_refused(tmp_path: Path) -> None:
    directory = _copy_sources(tmp_path)
    for name in HOT_MODULES:
        _compile(directory, name)
    _record(directory)
    with (directory / "inversion.py").open("a") as source:
        source.write("\n# an edit\n")
    assert stale_modules(directory) == ["inversion"]
    with pytest.raises(StaleBuildError, match="inversion"):
        ensure_current(directory)


def test_an_extension_module_without_a_record_is_refused(tmp_path: Path) -> None:
    directory = _copy_sources(tmp_path)
    _compile(directory, "node_bytes")
    assert stale_modules(directory) == ["node_bytes"]
    _record(directory, ("inversion",))
    assert stale_modules(directory) == ["node_bytes"]
    (directory / MANIFEST).write_text("not json")
    assert stale_modules(directory) == ["node_bytes"]


def test_an_extension_module_whose_source_is_gone_is_refused(tmp_path: Path) -> None:
    directory = _copy_sources(tmp_path)
    _compile(directory, "commit_bytes")
    _record(directory)
    (directory / "commit_bytes.py").unlink()
    assert stale_modules(directory) == ["commit_bytes"]


def test_this_package_is_current_and_reports_what_it_imports() -> None:
    ensure_current()
    found = compiled.compiled_modules()
    assert set(found) <= set(HOT_MODULES)
    # Compiled exactly when an extension module sits beside the source (a copy built in place by
    # scripts/check-compiled); the development tree, an editable install, has none.
    assert found == [n for n in HOT_MODULES if (PACKAGE / f"{n}{SUFFIX}").exists()]


def test_setup_compiles_exactly_the_guarded_modules() -> None:
    tree = ast.parse((ROOT / "setup.py").read_text())
    (hot,) = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "HOT" for t in node.targets)
    ]
    assert ast.literal_eval(hot) == [f"ingest/verify/{n}.py" for n in HOT_MODULES]
