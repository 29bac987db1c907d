"""Shell completion (argcomplete): verbs and options from the parser, launch names from the package,
message types from their declarations, and live topic and node names from the running graph.

    eval "$(percept completion bash)"      # in ~/.bashrc
    eval "$(percept completion zsh)"       # in ~/.zshrc
"""

from __future__ import annotations

import argparse
from typing import Any

SHELLS = ("bash", "zsh", "fish", "tcsh")


def register(verbs: Any) -> None:
    p = verbs.add_parser("completion", help="Print the shell code that completes percept commands.")
    p.add_argument("shell", nargs="?", default="bash", choices=SHELLS, help="the shell to complete in")
    p.set_defaults(func=_print)


def _print(args: argparse.Namespace) -> int:
    from argcomplete.shell_integration import shellcode

    print(shellcode(["percept"], shell=args.shell))
    return 0


def _graph(kind: str) -> list[str]:
    """Topic or node names of the running graph; none (quietly) when no registry answers in time."""
    from perception.runtime.graph import graph_nodes

    try:
        nodes = graph_nodes(include_hidden=kind != "node", timeout_s=0.3)
    except Exception:  # completion must never print an error into the user's command line
        return []
    if kind == "node":
        return [n["name"] for n in nodes]
    return sorted({e["topic"] for n in nodes for e in (*n["publishers"], *n["subscriptions"])})


def topics(**_: Any) -> list[str]:
    return _graph("topic")


def nodes(**_: Any) -> list[str]:
    return _graph("node")


def message_types(**_: Any) -> list[str]:
    from perception import msgs

    return sorted(msgs.registered_types())


def launch_names(prefix: str = "", **_: Any) -> list[str]:
    from argcomplete.completers import FilesCompleter

    from perception.installed import launch_files

    return [*launch_files(), *FilesCompleter(("yaml", "yml"))(prefix)]


COMPLETERS = {
    "topic": topics,
    "topics": topics,
    "node": nodes,
    "type": message_types,
    "file@launch": launch_names,
}


def attach(parser: argparse.ArgumentParser, verb: str = "") -> None:
    """Give every positional named topic(s), node or type (and launch's file) its completer."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                attach(sub, verb or name)
        elif action.dest in COMPLETERS or f"{action.dest}@{verb}" in COMPLETERS:
            action.completer = COMPLETERS.get(f"{action.dest}@{verb}", COMPLETERS.get(action.dest))  # type: ignore[attr-defined]


def autocomplete(parser: argparse.ArgumentParser) -> None:
    """Answer the shell's completion request and exit, when this run is one (else return at once)."""
    import os

    if "_ARGCOMPLETE" not in os.environ:
        return
    import argcomplete

    attach(parser)
    argcomplete.autocomplete(parser)
