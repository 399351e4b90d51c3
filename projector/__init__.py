"""Projector: the Kafka event log → Postgres read models, exactly once in effect.

Pure core: ``fold`` (what an event does to the read models, given the current ledger row);
I/O shell: ``consumer`` (group membership, seeks to offsets stored in Postgres) and ``store`` (the
one unit of work: rows, counts, dead letters and offsets in one transaction). Composition root:
``app``.
"""
