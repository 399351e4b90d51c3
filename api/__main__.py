"""Entry point of ``plyr-index serve``: settings, logging, then uvicorn with :func:`api.app.create_app`."""

from __future__ import annotations

import argparse
import sys

from runtime.logging import configure
from runtime.settings import SettingsError, load_platform


def main(argv: list[str] | None = None) -> int:
    """``plyr-index serve``."""
    p = argparse.ArgumentParser(prog="plyr-index serve", description="Serve the read API (XRPC, feeds, stream).")
    p.add_argument("--host", help="listen address (env API_HOST)")
    p.add_argument("--port", type=int, help="listen port (env API_PORT)")
    p.add_argument("--schema", dest="schema_name", help="read-model schema (env API_SCHEMA_NAME)")
    args = p.parse_args(argv)
    from api.settings import load_api

    try:
        platform = load_platform()
        settings = load_api(host=args.host, port=args.port, schema_name=args.schema_name)
    except SettingsError as err:
        print(f"plyr-index serve: {err}", file=sys.stderr)  # noqa: T201 - before logging exists
        return 2
    configure(platform.log_level, platform.log_format)
    import uvicorn

    from api.app import create_app

    uvicorn.run(
        create_app(platform.database_url, settings, platform=platform),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
