"""`percept`: the command line, in the spirit of the ros2 CLI. Each verb module adds its own parser."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from perception.errors import PerceptError


def build_parser() -> argparse.ArgumentParser:
    from perception import __version__
    from perception.cli import (
        bag,
        bench,
        calibrate,
        completion,
        dataset,
        doctor,
        export,
        faults,
        foxglove,
        interface,
        keys,
        launch,
        node,
        param,
        record,
        ros2,
        service,
        soak,
        teach,
        topic,
        track,
        train,
        view,
    )
    from perception.cli.common import SuggestingParser

    parser = SuggestingParser(prog="percept", description="Camera-to-action perception on ZeroMQ.")
    parser.add_argument("--version", action="version", version=f"percept {__version__}")
    verbs = parser.add_subparsers(
        dest="verb", metavar="COMMAND", required=True, parser_class=SuggestingParser
    )
    for module in (
        launch,
        topic,
        node,
        param,
        service,
        interface,
        doctor,
        calibrate,
        bench,
        soak,
        faults,
        dataset,
        train,
        teach,
        export,
        track,
        record,
        bag,
        view,
        foxglove,
        ros2,
        keys,
        completion,
    ):
        module.register(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Ctrl-C (or a launcher stopping its nodes) may come while the verbs are still being imported:
    # the whole command, imports included, ends with exit code 130 and no traceback.
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return 130


def _main(argv: Sequence[str] | None) -> int:
    from perception.cli.completion import autocomplete

    parser = build_parser()
    autocomplete(parser)  # answers a shell's tab completion and exits, when this run is one
    args, extra = parser.parse_known_args(argv)
    # `percept launch FILE --duration 5 rate:=10`: launch arguments may follow options.
    if getattr(args, "verb", None) == "launch" and all(":=" in item for item in extra):
        args.arguments += extra
    elif extra:  # with the usage of the command that was parsed (`percept topic list`), not percept's own
        _parser_of(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    # SIGTERM (a CI timeout, `kill`) ends a command as Ctrl-C does, through its cleanup: a benchmark
    # stops the processes it started. Commands that stop gracefully install their own handler.
    signal.signal(signal.SIGTERM, _terminated)
    try:
        return int(args.func(args) or 0)
    except PerceptError as exc:
        print(f"percept: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `percept ... | head`: the reader has gone; nothing left to say
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the flush at exit does not fail again
        return 141


def _parser_of(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The innermost subcommand's parser that `args` came through (`topic` then `list`)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = getattr(args, action.dest, None)
            if chosen in action.choices:
                return _parser_of(action.choices[chosen], args)
    return parser


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
