"""Build hook: ingest's hot path compiled with mypyc, when asked for and never in place of edits.

Everything about the package is in pyproject.toml; this file only adds the optional extension modules.
With ``PLYR_MYPYC=1`` in the environment of a wheel build (``pip wheel .``, ``pip install .``, the deploy
image), the modules in :data:`HOT` are compiled with mypyc; the ``.py`` sources ship beside them, so the
pure-Python code is always there to fall back on. Why only then:

- Without ``PLYR_MYPYC=1`` nothing here runs mypy or a C compiler: ``pip install -e '.[test]'`` and CI
  build exactly as without this file.
- An editable install is never compiled, even with ``PLYR_MYPYC=1``: its extension modules would sit in
  the source tree and shadow the ``.py`` files, so an edit would silently run the old compiled code.
- A compile that cannot happen (mypy missing, no C compiler or Python headers, a mypyc error) leaves
  the build pure Python with a warning instead of failing it, and removes any half-built output.
- Every compiled build records the sha256 of each source it compiled (``ingest/compiled.py``
  reads it): importing a compiled module whose source has changed since refuses to run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
# The op inversion, its node byte forms and the commit block reader (pure Python per MST node, the
# part of commit verification that is not C already), and the CAR reader (pure Python per block, read
# for every in-scope commit): README, "Compiled hot path". ingest/compiled.py lists the same modules.
HOT = [
    "ingest/verify/inversion.py",
    "ingest/verify/node_bytes.py",
    "ingest/verify/commit_bytes.py",
    "ingest/ipld/car.py",
]
MANIFEST = "ingest/compiled_sources.json"


def _warn(message: str) -> None:
    # setup.py has no logging configuration of its own; pip shows a build's stderr.
    sys.stderr.write(f"plyr-index build: {message}\n")


# The commands that build modules into a wheel or a build tree. setuptools runs this file once per
# command it was asked for: 'egg_info'/'dist_info' for metadata (no need to run mypy for that), and
# 'editable_wheel' or 'develop' for an editable install, which must stay pure Python.
_BUILDS = {"bdist_wheel", "build", "build_ext", "install"}


def _wanted() -> bool:
    if os.environ.get("PLYR_MYPYC") != "1":
        return False
    if any(arg.startswith("editable") or arg == "develop" for arg in sys.argv[1:]):
        _warn("PLYR_MYPYC=1 ignored for an editable install: it stays pure Python so that edits take effect")
        return False
    return bool(_BUILDS.intersection(sys.argv[1:]))


def _ext_modules() -> tuple[list[Any], dict[str, str]]:
    """The extension modules to build, and the sha256 of each source as mypyc read it."""
    if not _wanted():
        return [], {}
    try:
        from mypyc.build import mypycify
    except ImportError as err:
        _warn(f"mypyc is not available ({err}); building pure Python")
        return [], {}
    digests = {path: hashlib.sha256((ROOT / path).read_bytes()).hexdigest() for path in HOT}
    # The build environment has none of the project's dependencies, so the project's mypy settings
    # (the pydantic plugin, strictness) cannot load: mypyc needs the types only to compile, and the
    # gate type-checks these modules strictly anyway. Untyped libraries (libipld) are Any here.
    config_dir = tempfile.mkdtemp()
    config = Path(config_dir) / "mypy.ini"
    config.write_text("[mypy]\nignore_missing_imports = True\n")
    try:
        return list(mypycify([f"--config-file={config}", *HOT], opt_level="3")), digests
    except (SystemExit, Exception) as err:  # mypyc exits on a type error; any failure here means no compile
        _warn(f"mypyc could not compile {HOT} ({type(err).__name__}: {str(err)[:300]}); building pure Python")
        return [], {}
    finally:
        shutil.rmtree(config_dir, ignore_errors=True)


EXT_MODULES, DIGESTS = _ext_modules()


class OptionalBuildExt(build_ext):
    """build_ext that falls back to the pure-Python modules when the compile fails, and records its sources."""

    def run(self) -> None:
        if not self.extensions:
            return
        if getattr(self, "editable_mode", False):
            _warn("not compiling for an editable install")
            return
        try:
            super().run()
        except Exception as err:  # a missing compiler or header surfaces as several distutils error types
            _warn(f"compiling the hot modules failed ({type(err).__name__}: {str(err)[:300]}); pure Python")
            for output in self.get_outputs():
                Path(output).unlink(missing_ok=True)
            return
        base = ROOT if self.inplace else Path(self.build_lib)
        (base / MANIFEST).write_text(json.dumps(DIGESTS, indent=2, sort_keys=True) + "\n")


setup(ext_modules=EXT_MODULES, cmdclass={"build_ext": OptionalBuildExt})
