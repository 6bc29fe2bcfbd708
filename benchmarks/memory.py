"""Memory probes, each run in a fresh process so RSS belongs to one driver alone.

``python -m benchmarks.memory peak --driver NAME --url URL`` streams one response and prints the
process's peak RSS (``VmHWM``, which ``exec`` resets, unlike ``ru_maxrss``) and how far RSS rose
during the stream. ``growth`` runs many requests and prints RSS and live-object growth between
the end of a warm-up and the end of the run.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from .drivers import SPECS, SyncDriver

__all__ = ["measure_growth", "measure_peak"]

_MB = 1024 * 1024
_BATCH = 100


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        return False
    return True


def _driver(name: str, url: str) -> SyncDriver:
    driver = SPECS[name].factory(url)
    assert isinstance(driver, SyncDriver)
    return driver


def _peak(name: str, url: str) -> dict[str, Any]:
    driver = _driver(name, url)
    gc.collect()
    setup_peak = _status_kb("VmHWM")
    before = _status_kb("VmRSS")
    reset = _reset_peak()
    driver.before()
    events = driver.stream()
    driver.after()
    stream_peak = _status_kb("VmHWM")
    return {
        "events": events,
        "peak_mb": max(setup_peak, stream_peak) / 1024,
        "before_mb": before / 1024,
        "stream_rise_mb": (stream_peak - before) / 1024 if reset else None,
    }


def _growth(name: str, url: str, warmup: int, total: int) -> dict[str, Any]:
    driver = _driver(name, url)

    def run(count: int) -> None:
        for start in range(0, count, _BATCH):
            driver.before()
            for _ in range(min(_BATCH, count - start)):
                driver.stream()
            driver.after()  # also empties the in-memory exporter: it is not the library

    run(warmup)
    gc.collect()
    rss, objects = _status_kb("VmRSS"), len(gc.get_objects())
    run(total - warmup)
    gc.collect()
    return {
        "requests": total,
        "rss_growth_mb": (_status_kb("VmRSS") - rss) / 1024,
        "object_growth": len(gc.get_objects()) - objects,
    }


def _spawn(args: list[str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", *args],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory probe {args} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def measure_peak(name: str, url: str) -> dict[str, Any]:
    """Peak RSS of a fresh process that streams one response from ``url`` with ``name``."""
    return _spawn(["peak", "--driver", name, "--url", url])


def measure_growth(name: str, url: str, *, warmup: int, total: int) -> dict[str, Any]:
    """RSS and object growth of ``total`` requests after the first ``warmup``."""
    args = ["growth", "--driver", name, "--url", url]
    return _spawn([*args, "--warmup", str(warmup), "--total", str(total)])


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m benchmarks.memory``."""
    parser = argparse.ArgumentParser(description="one memory probe, printed as JSON")
    parser.add_argument("probe", choices=["peak", "growth"])
    parser.add_argument("--driver", required=True, choices=sorted(SPECS))
    parser.add_argument("--url", required=True)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--total", type=int, default=10000)
    args = parser.parse_args(argv)
    if args.probe == "peak":
        result = _peak(args.driver, args.url)
    else:
        result = _growth(args.driver, args.url, args.warmup, args.total)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
