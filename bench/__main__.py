"""`python -m bench [NAME ...]`: run the named benchmarks (all by default)."""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time

BENCHMARKS = ("ingest", "beam_runners", "coco", "input_pipeline", "learn_sample")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("names", nargs="*", help=f"any of {', '.join(BENCHMARKS)} (default: all)")
    args = parser.parse_args()
    unknown = set(args.names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {BENCHMARKS}")
    print(f"# {time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}")
    for name in args.names or BENCHMARKS:
        importlib.import_module(f"bench.{name}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
