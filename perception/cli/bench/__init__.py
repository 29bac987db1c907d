"""percept bench VERB: one module per benchmark, each with its own arguments and handler; the options
every benchmark takes are declared here, once."""

from __future__ import annotations

import argparse
from typing import Any

from perception.cli.bench import bag, bus, detect, graph, grasp, mot, record, render, ros2, sim, track, view

BENCHMARKS = (
    bus,
    detect,
    render,
    graph,
    grasp,
    track,
    mot,
    record,
    bag,
    view,
    sim,
    ros2,
)  # the order `bench --help` lists


def register(verbs: Any) -> None:
    bench = verbs.add_parser("bench", help="Benchmarks, each side by side with its peer.").add_subparsers(
        dest="what", required=True
    )
    for module in BENCHMARKS:
        add_shared_options(module.register(bench))


def add_shared_options(parser: argparse.ArgumentParser) -> None:
    """The options of every benchmark, after its own."""
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
