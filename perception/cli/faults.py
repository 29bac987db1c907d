"""percept faults: bursts, slow and stalled consumers, and a server killed mid-request, injected into a
launched graph and measured (perception/bench/faults.py)."""

from __future__ import annotations

import argparse
from typing import Any

from perception.cli.common import output_file, positive_float


def register(verbs: Any) -> None:
    from perception.bench.faults import CAMPAIGNS

    p = verbs.add_parser(
        "faults",
        help="Inject a burst, a slow or stalled consumer, or a server's death into a graph, and measure it.",
    )
    p.add_argument("campaign", choices=CAMPAIGNS)
    p.add_argument(
        "--launch",
        metavar="FILE",
        help="the graph (default: synthetic_pipeline; sim_detect for service-death)",
    )
    p.add_argument("arguments", nargs="*", metavar="NAME:=VALUE", help="launch arguments")
    p.add_argument("--seconds", type=positive_float, default=10.0, help="each phase's length (default 10)")
    p.add_argument("--source", default="/camera", help="the node whose rate a burst raises (default /camera)")
    p.add_argument("--consumer", default="/detector", help="the node slowed or stalled (default /detector)")
    p.add_argument("--output", default="/detections", help="the topic whose freshness is timed")
    p.add_argument("--frames", default="/camera/image", help="the topic from source to consumer")
    p.add_argument("--rounds", type=int, default=5, help="service-death: kills (default 5)")
    p.add_argument("--log", type=output_file, help="where the graph's own output goes (default: nowhere)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=_faults)


def _faults(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from perception.bench import faults

    print(f"faults: {args.campaign}", flush=True)
    report = faults.run(
        args.campaign,
        args.launch,
        args.seconds,
        args.source,
        args.consumer,
        args.output,
        args.frames,
        args.rounds,
        args.arguments,
        args.log,
    )
    print(faults.table(report))
    if args.json:
        print(json.dumps({"benchmark": "faults", "results": dataclasses.asdict(report)}))
    return 0
