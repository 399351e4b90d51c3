"""Entry point of ``plyr-index project``: settings, logging, then :func:`projector.app.run`."""

from __future__ import annotations

import argparse
import sys

from runtime.gc_tuning import tune_for_batches
from runtime.lifecycle import run_until_signalled
from runtime.logging import configure
from runtime.settings import SettingsError, load_platform


def main(argv: list[str] | None = None) -> int:
    """``plyr-index project``."""
    p = argparse.ArgumentParser(prog="plyr-index project", description="Fold the event log into Postgres read models.")
    p.add_argument("--group-id", help="consumer group (env PROJECTOR_GROUP_ID)")
    p.add_argument("--schema", dest="schema_name", help="read-model schema (env PROJECTOR_SCHEMA_NAME)")
    p.add_argument("--metrics-port", type=int, help="Prometheus port, 0 = off")
    args = p.parse_args(argv)
    from projector.settings import load_projector

    try:
        platform = load_platform()
        settings = load_projector(group_id=args.group_id, schema_name=args.schema_name, metrics_port=args.metrics_port)
    except SettingsError as err:
        print(f"plyr-index project: {err}", file=sys.stderr)  # noqa: T201 - before logging exists
        return 2
    configure(platform.log_level, platform.log_format)
    from projector import app

    tune_for_batches()
    code = run_until_signalled(app.run(platform, settings))
    return 0 if code is None else code


def replay_main(argv: list[str] | None = None) -> int:
    """``plyr-index replay``: rebuild the read models from offset 0 and swap them in."""
    p = argparse.ArgumentParser(
        prog="plyr-index replay",
        description="Rebuild every read model from offset 0 into a fresh schema while the live one serves, then swap.",
    )
    p.add_argument("--schema", dest="schema_name", help="the live read-model schema (env PROJECTOR_SCHEMA_NAME)")
    args = p.parse_args(argv)
    from projector.settings import load_projector

    try:
        platform = load_platform()
        settings = load_projector(schema_name=args.schema_name, metrics_port=0)
    except SettingsError as err:
        print(f"plyr-index replay: {err}", file=sys.stderr)  # noqa: T201
        return 2
    configure(platform.log_level, platform.log_format)
    from projector import app

    tune_for_batches()
    result = run_until_signalled(app.rebuild(platform, settings, progress=sys.stderr))
    return 0 if result is not None else 1


if __name__ == "__main__":
    sys.exit(main())
