"""The hand-written shells: ``AsyncClient`` and ``AsyncResponseStream``.

``scripts/unasync.py`` generates ``tracedllm/_sync`` from this package; edit here, then run it.
"""
