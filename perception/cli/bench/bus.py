"""percept bench bus: our pub/sub over shared memory and TCP beside raw pyzmq and raw iceoryx2
(perception/bench/bus.py)."""

from __future__ import annotations

import argparse
from typing import Any

from perception.bench.common import as_json
from perception.cli.common import comma_separated, positive_float, positive_int
from perception.errors import PerceptError


def register(bench: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = bench.add_parser(
        "bus",
        help="Our pub/sub (shared memory, TCP) beside raw pyzmq and iceoryx2: latency, throughput, losses.",
    )
    p.add_argument(
        "--payloads",
        default="200B,640x480x3,1280x720x3,1920x1080x3",
        help="comma-separated payloads (default: all four)",
    )
    p.add_argument(
        "--sides",
        default="",
        help="comma-separated sides (default: shm, shm-loan, tcp, tcp-curve, zmq, and iceoryx2 when installed)",
    )
    p.add_argument(
        "--rounds", type=positive_int, default=1, help="interleaved rounds (medians reported; default 1)"
    )
    p.add_argument(
        "--count-1khz", type=positive_int, default=1000, help="messages in the 1 kHz phase (default 1000)"
    )
    p.add_argument(
        "--count-30hz", type=positive_int, default=60, help="messages in the 30 Hz phase (default 60)"
    )
    p.add_argument(
        "--seconds",
        type=positive_float,
        default=1.5,
        help="length of the flat-out phase in seconds (default 1.5)",
    )
    p.set_defaults(func=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    from perception.bench import bus

    payloads = comma_separated(args.payloads)
    unknown = [p for p in payloads if p not in bus.PAYLOADS]
    if unknown:
        raise PerceptError(f"unknown payload {unknown[0]!r}; choose from {', '.join(bus.PAYLOADS)}")
    sides = comma_separated(args.sides) or [
        s for s in bus.SIDES if s != "iceoryx2" or bus.iceoryx2_available()
    ]
    unknown = [s for s in sides if s not in bus.SIDES]
    if unknown:
        raise PerceptError(f"unknown side {unknown[0]!r}; choose from {', '.join(bus.SIDES)}")
    if "iceoryx2" in sides and not bus.iceoryx2_available():
        raise PerceptError("side iceoryx2 needs the iceoryx2 package: pip install iceoryx2")
    settings = {
        "rounds": args.rounds,
        "count_1khz": args.count_1khz,
        "count_30hz": args.count_30hz,
        "seconds": args.seconds,
        "sides": sides,
        "send_hwm": bus.SEND_HWM,
        "receive_buffer": bus.RECEIVE_BUFFER,
    }
    print(f"bus benchmark: {settings}", flush=True)
    if "iceoryx2" not in sides:
        print("(raw iceoryx2 not installed: pip install iceoryx2 to add it)", flush=True)
    rows = bus.run(payloads, sides, args.rounds, args.count_1khz, args.count_30hz, args.seconds)
    print(bus.table(rows))
    for line in bus.ratios(rows):
        print(line)
    if args.json:
        print(as_json("bus", rows, settings))
    return 0
