"""percept bench record: percept record at rising rates (perception/bench/record.py)."""

from __future__ import annotations

import argparse
from typing import Any

from perception.bench.common import as_json
from perception.cli.common import positive_float, positive_numbers


def register(bench: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = bench.add_parser(
        "record", help="percept record on 640x480 frames + detections at rising rates."
    )
    p.add_argument(
        "--rates", type=positive_numbers, default="30,60,120", help="comma-separated frame rates (Hz)"
    )
    p.add_argument("--seconds", type=positive_float, default=5.0, help="publishing time per rate")
    p.set_defaults(func=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    from perception.bench import record

    rates = args.rates
    settings = {"rates": rates, "seconds": args.seconds, "frame": "640x480x3 + 5 detections"}
    print(f"record benchmark (percept record as its own process): {settings}", flush=True)
    rows = record.run(rates, args.seconds)
    print(record.table(rows))
    if args.json:
        print(as_json("record", rows, settings))
    return 0
