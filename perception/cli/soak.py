"""percept soak: a launched graph for minutes or hours, its memory, rates, losses and restarts, and how
fast it heals from kill -9 (perception/bench/soak.py)."""

from __future__ import annotations

import argparse
from typing import Any

from perception.cli.common import output_file, positive_float


def register(verbs: Any) -> None:
    p = verbs.add_parser(
        "soak",
        help="Run a launched graph for a while: memory, rates, losses, restarts, and healing from kills.",
    )
    p.add_argument("file", help="a launch file, or the name of one that ships")
    p.add_argument("arguments", nargs="*", metavar="NAME:=VALUE", help="launch arguments")
    p.add_argument("--minutes", type=positive_float, default=5.0, help="how long to run (default 5)")
    p.add_argument(
        "--kill-every",
        type=positive_float,
        metavar="SECONDS",
        help="kill -9 a node that respawns (in turn, then the registry) this often, and time the healing (default: never)",
    )
    p.add_argument(
        "--plot", type=output_file, metavar="PNG", help="memory and rates over time (the bench extra)"
    )
    p.add_argument("--log", type=output_file, help="where the graph's own output goes (default: nowhere)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=_soak)


def _soak(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from perception.bench import soak
    from perception.installed import require

    if args.plot is not None:
        require("matplotlib", "a soak's plot")
    print(
        f"soak: {args.file} for {args.minutes:g} min"
        + (f", kill -9 every {args.kill_every:g} s" if args.kill_every else ""),
        flush=True,
    )
    report = soak.run(args.file, args.minutes, args.kill_every, args.arguments, log=args.log)
    print(soak.table(report))
    if args.plot is not None:
        print(f"plot: {soak.plot(report, args.plot)}")
    if args.json:
        summary = dataclasses.asdict(report)
        del summary["series"], summary["rate_series"]
        print(json.dumps({"benchmark": "soak", "results": summary}))
    return 0
