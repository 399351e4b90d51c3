"""Write the fuzz tally (inputs per target and outcome) where ``PLYR_FUZZ_REPORT`` says, at the end."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from tests.fuzz.harness import REPORT_ENV, TALLY, scale


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = os.environ.get(REPORT_ENV)
    if not path:
        return
    report = {
        "scale": scale(),
        "exitstatus": int(exitstatus),
        "failed": session.testsfailed,
        "targets": {target: dict(outcomes) for target, outcomes in sorted(TALLY.items())},
    }
    Path(path).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
