"""percept foxglove: serve the running graph to Foxglove, live (perception/recording/live.py)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from perception.cli.common import port, positive_float
from perception.recording import IMAGE_FORMATS, OLD_SUBPROTOCOL, SDK_SUBPROTOCOL


def register(verbs: Any) -> None:
    p = verbs.add_parser(
        "foxglove",
        help="Serve the running graph to Foxglove over its WebSocket protocol (images, boxes, tracks).",
        description="Serve the running graph to Foxglove over its WebSocket protocol (images, boxes, "
        f"tracks). The server (foxglove-sdk) accepts only clients offering the subprotocol {SDK_SUBPROTOCOL}: "
        f"the Foxglove app connects; Lichtblick, older Foxglove Studio releases and @foxglove/ws-protocol "
        f"clients offer only {OLD_SUBPROTOCOL} and are refused (record with `percept record` and open the file "
        "in those). The server has no authentication: with a keystore (PERCEPT_KEYSTORE) the link refuses "
        "to start unless --allow-unauthenticated is given.",
    )
    p.add_argument("topics", nargs="*", help="topics to serve (default: every topic, as they appear)")
    p.add_argument(
        "--port", type=port, default=8765, help="WebSocket port (default 8765; 0 picks a free one)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: every interface)")
    p.add_argument(
        "--image-format",
        choices=IMAGE_FORMATS,
        default="raw",
        help="how images are sent: raw (default, for this machine), jpeg or png (for a slow link)",
    )
    p.add_argument(
        "--max-fps", type=positive_float, help="at most this many messages per topic a second (default: all)"
    )
    p.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="serve even when the graph has a keystore, knowing that foxglove-sdk's server has no "
        "authentication: any local user (off loopback, anyone who reaches the port) can read every topic",
    )
    p.add_argument("--name", default="foxglove", help="the link's node name (default foxglove)")
    p.add_argument("--duration", type=positive_float, help="stop after this many seconds (default: Ctrl-C)")
    p.set_defaults(func=_foxglove)


def _foxglove(args: argparse.Namespace) -> int:
    from perception.installed import require
    from perception.runtime.context import Context, NodeOverrides
    from perception.runtime.runner import configure_logging
    from perception.runtime.stopping import StopFlag, stop_signals_call

    require("foxglove", "percept foxglove")  # before anything starts: the one-line hint
    from perception.recording.live import FoxgloveLink

    parameters: dict[str, Any] = {"host": args.host, "port": args.port, "image_format": args.image_format}
    if args.topics:
        parameters["topics"] = args.topics
    if args.max_fps:
        parameters["max_fps"] = args.max_fps
    if args.allow_unauthenticated:
        parameters["allow_unauthenticated"] = True
    configure_logging("info")  # the link says where it serves, and who subscribes to what
    Context.set_default(Context(overrides=NodeOverrides(name=args.name, parameters=parameters)))
    link = FoxgloveLink()
    stop = StopFlag()
    deadline = None if args.duration is None else time.monotonic() + args.duration
    with stop_signals_call(stop.set):
        try:
            app = link.server.app_url()
            print(f"open it in Foxglove: {app or link.url} (Ctrl-C to stop)", flush=True)
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                link.spin_once(0.05)
        finally:
            link.destroy()
    return 0
