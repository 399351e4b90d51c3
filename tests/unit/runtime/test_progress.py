"""The live progress line: drawn in place only on a terminal (or when forced), last line kept."""

from __future__ import annotations

import io

from runtime.progress import LiveLine, bar, duration


def test_pieces() -> None:
    assert bar(1, 4) == "[" + "#" * 6 + "." * 18 + "]"
    assert bar(9, 4) == bar(0, 0) == "[" + "#" * 24 + "]"
    assert (duration(59.9), duration(61), duration(3725)) == ("0:59", "1:01", "1:02:05")


async def test_draws_only_on_a_terminal_and_pads_over_longer_lines() -> None:
    quiet = io.StringIO()
    async with LiveLine(lambda: "never", quiet):
        pass
    assert quiet.getvalue() == ""
    texts = iter(["a long first line", "short"])
    shown = io.StringIO()
    line = LiveLine(lambda: next(texts, "short"), shown, force=True, interval=60)
    async with line:
        line.draw()
    out = shown.getvalue()
    assert out.startswith("\ra long first line") and out.endswith("\rshort            \n")
