"""percept view: the live web viewer (the graph, topic rates, image streams with overlays)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from perception.cli.common import port, positive_float


def register(verbs: Any) -> None:
    p = verbs.add_parser(
        "view",
        help="Serve a live web page of the graph and its image streams.",
        description="Serve a live web page of the graph and its image streams. Off loopback, and on "
        "loopback too when the graph has a keystore (PERCEPT_KEYSTORE: any local user could read the page "
        "otherwise), the page asks for a token: the address printed ends in ?token=..., and the page keeps "
        "it in a cookie.",
    )
    p.add_argument("--port", type=port, default=8080, help="default 8080; 0 picks a free port")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to serve on (0.0.0.0: every interface; off loopback, or with a keystore, the page "
        "needs a token)",
    )
    p.add_argument(
        "--token",
        help="the token the page asks for (default: PERCEPT_VIEW_TOKEN, or a random one off loopback or "
        "with a keystore); other users of the machine can read a command line (ps): prefer the variable",
    )
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another name browsers reach this machine by (a DNS alias, a proxy); repeatable",
    )
    p.add_argument(
        "--fps",
        type=positive_float,
        default=15.0,
        help="frame rate of a stream in the page, until changed there (default 15)",
    )
    p.add_argument("--quality", type=int, default=80, help="JPEG quality of the streams (1-100)")
    p.add_argument("--duration", type=positive_float, help="stop after this many seconds (default: Ctrl-C)")
    p.set_defaults(func=_view)


def _view(args: argparse.Namespace) -> int:
    from perception.errors import PerceptError
    from perception.viewer.server import MAX_FPS, run

    if not 1 <= args.quality <= 100:
        raise PerceptError(f"--quality: expected 1-100, found {args.quality}")
    if args.fps > MAX_FPS:
        raise PerceptError(f"--fps: expected at most {MAX_FPS:g} frames/s, found {args.fps:g}")
    token, source = args.token, "--token"
    if token is None:
        token, source = os.environ.get("PERCEPT_VIEW_TOKEN"), "PERCEPT_VIEW_TOKEN"
    if token is not None and not token.strip():
        # Refused rather than taken as not given: an empty token is a variable left unset, and taking it
        # as none would serve loopback with no token at all, where one was meant. Served as it was, it
        # printed an address ending in ?token= that every request was refused with.
        raise PerceptError(
            f"{source}: expected a token (or none: off loopback or with a keystore a random one is made), "
            f"found {token!r}"
        )
    try:
        return run(args.host, args.port, args.fps, args.quality, args.duration, token, tuple(args.allow_host))
    except OSError as exc:
        raise PerceptError(f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}") from None
