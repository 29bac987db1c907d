"""percept bench record: percept record at rising rates (perception/bench/record.py)."""

from __future__ import annotations

import argparse
from typing import Any

from perception.bench.common import as_json
from perception.cli.common import positive_float, positive_numbers
from perception.recording import COMPRESSIONS


def register(bench: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = bench.add_parser(
        "record", help="percept record on 640x480 frames + detections at rising rates."
    )
    p.add_argument(
        "--rates", type=positive_numbers, default="30,60,120", help="comma-separated frame rates (Hz)"
    )
    p.add_argument("--seconds", type=positive_float, default=5.0, help="publishing time per rate")
    p.add_argument(
        "--compression", choices=COMPRESSIONS, default="zstd", help="the recorder's chunk compression"
    )
    p.set_defaults(func=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    from perception.bench import record

    rates = args.rates
    settings = {
        "rates": rates,
        "seconds": args.seconds,
        "frame": "640x480x3 of noise (the worst case for a compressor) + 5 detections",
        "compression": args.compression,
    }
    print(f"record benchmark (percept record as its own process): {settings}", flush=True)
    rows = record.run(rates, args.seconds, args.compression)
    print(record.table(rows))
    if args.json:
        print(as_json("record", rows, settings))
    return 0
