"""``plyr-index up``: the whole system on one machine, stopped cleanly on Ctrl-C.

Starts the embedded tansu broker and prepares the Postgres database named by ``PLYR_DATABASE_URL``
(created when missing). With no URL set and no server on the default one, or with
``--embedded-postgres``, it runs an embedded PostgreSQL with its data under ``--data-dir``. Then it
applies the migrations and runs the ingester, the projector and the API as child processes, with
their logs under ``--data-dir``/logs. By default the ingester follows the public relay;
``--upstream URL`` follows another, ``--from-file CAPTURE`` loads a capture instead (no network).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from runtime.embedded_pg import EmbeddedPostgres, start_embedded
from runtime.services import Broker, ServiceError, start_broker
from runtime.settings import PlatformSettings, SettingsError, load_platform

DEFAULT_UPSTREAM = "wss://bsky.network"


class UpError(Exception):
    """The stack cannot start; the message says what to do."""


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


async def _prepare_database(url: str) -> None:
    try:
        conn = await asyncpg.connect(url, timeout=5)
    except asyncpg.InvalidCatalogNameError:
        name = urlsplit(url).path.lstrip("/")
        admin = await asyncpg.connect(url.rsplit("/", 1)[0] + "/postgres", timeout=5)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        return
    except (OSError, asyncpg.PostgresError) as err:
        raise UpError(
            f"no Postgres at {url} ({type(err).__name__}: {err}).\n"
            "Start one (any Postgres >= 14) and set PLYR_DATABASE_URL to it, or leave PLYR_DATABASE_URL unset"
            " (or pass --embedded-postgres) to run an embedded PostgreSQL."
        ) from err
    await conn.close()


async def _create_topic(bootstrap: str, platform: PlatformSettings) -> None:
    from ingest.producer import ensure_topic

    await ensure_topic(bootstrap, platform.events_topic, platform.topic_partitions, platform.topic_replication_factor)


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), timeout=2):
            return True
    except OSError:
        return False


def _check_upstreams(upstreams: list[str]) -> None:
    for url in upstreams:
        host = urlsplit(url).hostname or ""
        try:
            socket.getaddrinfo(host, 443)
        except OSError as err:
            raise UpError(
                f"cannot resolve {host} ({err}): is there no network here?\n"
                "Offline, load a capture instead: plyr-index up --from-file CAPTURE "
                "(record one where there is network with: plyr-index capture --upstream URL --out CAPTURE)"
            ) from err


def _command() -> list[str]:
    # The same interpreter and install as this process, whatever PATH holds.
    return [sys.executable, "-m", "plyr_index"]


def _wait_healthy(url: str, children: dict[str, subprocess.Popen[bytes]], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, child in children.items():
            if child.poll() not in (None, 0):
                raise UpError(f"{name} exited with {child.returncode} while starting; see its log")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise UpError(f"the API did not answer on {url} within {timeout:.0f}s; see its log")


def _stop(children: dict[str, subprocess.Popen[bytes]], broker: Broker | None) -> None:
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children.values():
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    if broker is not None:
        broker.stop()


def run(args: argparse.Namespace) -> int:
    """Start everything, supervise until a signal or a child's failure, stop everything."""
    platform = load_platform()
    logs = args.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    source = ["--from-file", str(args.from_file)] if args.from_file else []
    if not args.from_file:
        upstreams = args.upstream or [DEFAULT_UPSTREAM]
        _check_upstreams(upstreams)
        for url in upstreams:
            source += ["--upstream", url]
    broker: Broker | None = None
    embedded: EmbeddedPostgres | None = None
    children: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        database_url = platform.database_url
        if args.embedded_postgres or ("PLYR_DATABASE_URL" not in os.environ and not _reachable(database_url)):
            embedded = start_embedded(args.data_dir / "postgres", logs / "postgres.log")
            database_url = embedded.url
            _say(f"no Postgres given or running: using an embedded PostgreSQL ({embedded.directory})")
        asyncio.run(_prepare_database(database_url))
        broker = start_broker(logs / "broker.log")
        # Made here, before any part runs: a consumer's or producer's metadata request would otherwise
        # let the broker auto-create it without the unbounded retention the ingester insists on.
        asyncio.run(_create_topic(broker.bootstrap, platform))
        api_url = f"http://127.0.0.1:{args.port}"
        env = {
            **os.environ,
            "PLYR_DATABASE_URL": database_url,
            "PLYR_KAFKA_BOOTSTRAP": broker.bootstrap,
            "PLYR_KAFKA_IDEMPOTENCE": "false",
            "API_PORT": str(args.port),
            "API_PUBLIC_URL": api_url,
            "PROJECTOR_METRICS_PORT": "0",
            "INGEST_METRICS_PORT": "0",
        }
        cli = _command()
        subprocess.run([*cli, "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
        for name, argv in (("projector", ["project"]), ("api", ["serve"]), ("ingest", ["ingest", *source])):
            with (logs / f"{name}.log").open("ab") as out:
                children[name] = subprocess.Popen([*cli, *argv], env=env, stdout=out, stderr=out)
        _wait_healthy(api_url, children)
        _say(f"plyr-index is up: API {api_url}  (try {api_url}/xrpc/fm.plyr.index.getLatestTracks)")
        _say(f"logs: {logs}  · broker {broker.bootstrap}  · Ctrl-C stops everything")
        while not stopping:
            for name, child in children.items():
                code = child.poll()
                # A capture replay ends on its own; anything else ending is a failure.
                if code is not None and not (name == "ingest" and code == 0 and args.from_file):
                    raise UpError(f"{name} exited with {code}; see {logs / (name + '.log')}")
            time.sleep(0.2)
        _say("stopping")
        return 0
    finally:
        _stop(children, broker)
        if embedded is not None:
            embedded.stop()


def main(argv: list[str] | None = None) -> int:
    """``plyr-index up``."""
    p = argparse.ArgumentParser(
        prog="plyr-index up", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--upstream", action="append", metavar="URL", help=f"firehose to follow (default {DEFAULT_UPSTREAM})"
    )
    p.add_argument("--from-file", type=Path, metavar="CAPTURE", help="load a capture file instead (no network needed)")
    p.add_argument("--port", type=int, default=8080, help="API port (default 8080)")
    p.add_argument("--data-dir", type=Path, default=Path(".plyr"), help="logs and embedded data (default .plyr)")
    p.add_argument(
        "--embedded-postgres",
        action="store_true",
        help="run an embedded PostgreSQL (the default when PLYR_DATABASE_URL is unset and none runs locally)",
    )
    args = p.parse_args(argv)
    if args.from_file and not args.from_file.is_file():
        sys.stderr.write(f"plyr-index up: no capture file at {args.from_file}\n")
        return 2
    try:
        return run(args)
    except (UpError, ServiceError, SettingsError) as err:
        sys.stderr.write(f"plyr-index up: {err}\n")
        return 2
    except subprocess.CalledProcessError as err:
        sys.stderr.write(f"plyr-index up: {' '.join(err.cmd[-1:])} failed with {err.returncode}\n")
        return 2
