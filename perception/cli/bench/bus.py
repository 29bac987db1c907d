"""percept bench bus: our pub/sub against raw pyzmq (perception/bench/bus.py)."""

from __future__ import annotations

import argparse
from typing import Any

from perception.bench.common import as_json
from perception.cli.common import comma_separated, positive_float, positive_int
from perception.errors import PerceptError


def register(bench: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = bench.add_parser(
        "bus", help="Our pub/sub against raw pyzmq: latency and throughput."
    )
    p.add_argument("--payloads", default="640x480x3,1280x720x3,200B", help="comma-separated payloads")
    p.add_argument(
        "--rounds", type=positive_int, default=3, help="interleaved rounds per side (medians reported)"
    )
    p.add_argument("--count", type=positive_int, default=300, help="messages in each latency phase")
    p.add_argument(
        "--rate", type=positive_float, default=200.0, help="message rate in the latency phase (Hz)"
    )
    p.add_argument("--seconds", type=positive_float, default=1.5, help="length of each throughput phase")
    p.set_defaults(func=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    from perception.bench import bus

    payloads = comma_separated(args.payloads)
    unknown = [p for p in payloads if p not in bus.PAYLOADS]
    if unknown:
        raise PerceptError(f"unknown payload {unknown[0]!r}; choose from {', '.join(bus.PAYLOADS)}")
    settings = {
        "rounds": args.rounds,
        "count": args.count,
        "rate_hz": args.rate,
        "seconds": args.seconds,
        "transport": "tcp loopback",
        "send_hwm": bus.SEND_HWM,
        "receive_buffer": bus.RECEIVE_BUFFER,
    }
    print(f"bus benchmark: {settings}", flush=True)
    rows = bus.run(payloads, args.rounds, args.count, args.rate, args.seconds)
    print(bus.table(rows))
    print("ratio: ours / raw pyzmq (latency lower is better, throughput higher is better)")
    if args.json:
        print(as_json("bus", rows, settings))
    return 0
