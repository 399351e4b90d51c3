"""Ingest: the relay firehose (or a capture file) → normalized events on Kafka.

Pure core: ``frames`` → ``messages`` → ``normalize``; I/O shell: ``firehose``, ``capture``,
``producer``, ``cursor``; the composition root is ``app``.
"""
