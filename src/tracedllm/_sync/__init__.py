"""The sync shells, generated from ``tracedllm/_async`` by ``scripts/unasync.py``: do not edit."""
