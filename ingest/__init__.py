"""Ingest: the relay firehose (or a capture file) → normalized events on Kafka.

Pure core: ``frames`` → ``messages`` → ``normalize``; I/O shell: ``firehose``, ``capture``,
``producer``, ``cursor``; the composition root is ``app``.

Importing the package first refuses a stale compiled build (:mod:`ingest.compiled`): the hot-path
modules may be compiled with mypyc, and an extension module shadows its ``.py``, so one built from
older sources must fail loudly here rather than run old code.
"""

from ingest.compiled import ensure_current

ensure_current()
