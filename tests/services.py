"""The real services the tests need: the tansu broker on a free loopback port (see
:mod:`runtime.services`), and a fresh Postgres database on the server at 127.0.0.1:5432 (tests/conftest.py).

A developer who already runs a broker can point the tests at it with ``PLYR_TEST_KAFKA=host:port``.
"""

from __future__ import annotations

from runtime.services import Broker, ServiceError, free_port, start_broker, tansu_binary, wait_for_port

__all__ = ["Broker", "ServiceError", "free_port", "start_broker", "tansu_binary", "wait_for_port"]
