"""Side-by-side benchmarks of tracedllm against the httpx + httpx-sse floor and openai-python.

Run ``python -m benchmarks`` (full, a few minutes) or ``python -m benchmarks --quick``.
"""
