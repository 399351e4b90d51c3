"""The one place structlog is configured.

Every process calls :func:`configure` once from its entry point. Context such as ``did``, ``seq``,
``upstream`` goes into contextvars (``structlog.contextvars.bind_contextvars``) so every line a task
writes carries it; components bind ``component=`` on their own logger.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

LogFormat = Literal["json", "console"]


def configure(level: str = "INFO", fmt: LogFormat = "json") -> None:
    """Configure structlog and the stdlib root logger to write to stderr."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Libraries (aiokafka, websockets, asyncpg) log through the stdlib; keep them at WARNING so
    # their chatter does not drown ours, and route them to stderr as well.
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr, force=True)


def get_logger(component: str) -> structlog.stdlib.BoundLogger:
    """A logger bound to ``component``. Lazy: modules create theirs at import, before ``configure``
    runs, and a logger bound then would keep the default configuration."""
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(component=component)
    return logger
