"""Command line: ``python -m benchmarks [--quick] [--only SCENARIO ...] [--clock cpu|wall]
[--estimator best|median] [--strict]``."""

from __future__ import annotations

import argparse
import sys

from .measure import Estimate
from .report import render
from .scenarios import FULL, GROUPS, QUICK, SCENARIOS, run_all
from .targets import verdicts

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run every scenario and print the Markdown report; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: checks the harness runs, not timings"
    )
    parser.add_argument(
        "--clock",
        choices=["cpu", "wall"],
        default="cpu",
        help="the time the verdicts use (default: the client process's CPU time)",
    )
    parser.add_argument(
        "--estimator",
        choices=["best", "median"],
        default="best",
        help="best sample (default) or median of the per-round ratios",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[*SCENARIOS, *GROUPS],
        default=list(SCENARIOS),
        metavar="SCENARIO",
        help=f"run only these scenarios: {', '.join(SCENARIOS)}, or the groups "
        f"{' / '.join(GROUPS)} (default: all); targets of the others show n/a",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 if any target fails")
    args = parser.parse_args(argv)
    results = run_all(QUICK if args.quick else FULL, args.only)
    judged = Estimate(args.clock, args.estimator)
    checked = verdicts(results, judged)
    sys.stdout.write(render(results, checked, judged) + "\n")
    failed = any(v.status == "FAIL" for v in checked)
    return 1 if args.strict and failed else 0
