"""Generate the sync shells in ``src/tracedllm/_sync`` from the async ones in ``_async``.

The async code is the source (as in httpcore): this script rewrites it with a small table of
substitutions (``async def`` -> ``def``, ``await`` removed, ``AsyncX`` -> ``X``...), then
formats it with ruff. ``--check`` fails when a generated file differs from what is on disk, so a
hand edit of ``_sync`` fails CI (``tests/test_tooling.py`` runs it).

    python scripts/unasync.py          # regenerate
    python scripts/unasync.py --check  # verify
"""

from __future__ import annotations

import difflib
import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "tracedllm"
SOURCES = ("client.py", "stream.py", "transport.py")

SUBSTITUTIONS = (
    (r"\basync def\b", "def"),
    (r"\basync for\b", "for"),
    (r"\basync with\b", "with"),
    (r"\bawait ", ""),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\b__aiter__\b", "__iter__"),
    (r"\b__anext__\b", "__next__"),
    (r"\bStopAsyncIteration\b", "StopIteration"),
    (r"\bAsyncByteStream\b", "SyncByteStream"),  # httpx.ByteStream is another class
    (r"\bhandle_async_request\b", "handle_request"),
    (r"\btraced_async_http_client\b", "traced_http_client"),
    (r"\bAwaitable, ", ""),
    (r"\bAwaitable\[([\w.]+)\]", r"\1"),
    (r"\bAsync([A-Z]\w*)", r"\1"),  # AsyncClient -> Client, AsyncIterator -> Iterator...
    (r"\baclose_soon\b", "close_soon"),
    (r"\babounded_chunks\b", "bounded_chunks"),
    (r"\babody_chunks\b", "body_chunks"),
    (r"\banext\(", "next("),
    (r"\basleep\b", "sleep"),
    (r"\baclose\b", "close"),
    (r"\baread\b", "read"),
    (r"\baiter_bytes\b", "iter_bytes"),
)
_COMPILED = [(re.compile(pattern), replacement) for pattern, replacement in SUBSTITUTIONS]


def unasync(source: str, name: str) -> str:
    """The sync twin of one async module's text."""
    text = source
    for pattern, replacement in _COMPILED:
        text = pattern.sub(replacement, text)
    header = f"# Generated from src/tracedllm/_async/{name} by scripts/unasync.py: do not edit.\n"
    return _format(header + text, name)


def _format(text: str, name: str) -> str:
    """Sort the imports (the substitutions rename some), then format, as ruff would."""
    for command in (["check", "--select", "I", "--fix", "--quiet"], ["format"]):
        text = subprocess.run(
            [sys.executable, "-m", "ruff", *command, "--stdin-filename", f"_sync/{name}", "-"],
            input=text,
            capture_output=True,
            text=True,
            check=True,
            cwd=PACKAGE.parents[1],
        ).stdout
    return text


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name in SOURCES:
        expected = unasync((PACKAGE / "_async" / name).read_text(), name)
        target = PACKAGE / "_sync" / name
        current = target.read_text() if target.exists() else ""
        if current == expected:
            continue
        if check:
            stale.append(name)
            sys.stdout.writelines(
                difflib.unified_diff(
                    current.splitlines(keepends=True),
                    expected.splitlines(keepends=True),
                    f"{target} (on disk)",
                    f"{target} (generated)",
                )
            )
        else:
            target.write_text(expected)
            print(f"wrote {target}")
    if stale:
        print(f"\n_sync is out of date ({', '.join(stale)}): run python scripts/unasync.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
