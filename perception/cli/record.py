"""percept record / percept play: MCAP recordings of any topics, replayed with their original timing."""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path
from typing import Any

QUIET_S = 0.3  # on stop, the recorder writes until its topics have been quiet this long


def register(verbs: Any) -> None:
    p = verbs.add_parser("record", help="Record topics to an MCAP file (all topics when none is named).")
    p.add_argument("topics", nargs="*", help="topics to record (default: every topic, as they appear)")
    p.add_argument("-o", "--output", type=Path, required=True, help="the .mcap file to write")
    p.add_argument("--duration", type=float, help="stop after this many seconds (default: Ctrl-C)")
    p.add_argument(
        "--no-foxglove",
        dest="foxglove",
        action="store_false",
        help="skip the Foxglove views (/foxglove/...) of images, boxes, tracks and grasps",
    )
    p.set_defaults(func=_record)

    p = verbs.add_parser("play", help="Publish an MCAP recording again, with its original timing.")
    p.add_argument("file", type=Path)
    p.add_argument("--rate", type=float, default=1.0, help="speed factor (2: twice as fast)")
    p.add_argument("--loop", action="store_true", help="start again at the end")
    p.add_argument("--topics", nargs="*", help="only these topics")
    p.set_defaults(func=_play)


def _record(args: argparse.Namespace) -> int:
    from perception.cli.common import cli_node, graph_nodes
    from perception.qos import QoS
    from perception.recording import McapRecorder
    from perception.wire import peek_type

    node = cli_node("record")
    recorder = McapRecorder(args.output, foxglove=args.foxglove)
    subscriptions: dict[str, Any] = {}
    keep_all = QoS(depth=10_000)  # a recorder keeps everything; what it cannot keep is counted

    def subscribe(topic: str) -> None:
        def write(frames: list[Any]) -> None:
            received = time.time_ns()
            recorder.write(topic, peek_type(frames), frames[1:], received, received)

        subscriptions[topic] = node.create_subscription(None, topic, write, keep_all, raw=True)

    def discover() -> None:
        wanted = args.topics or sorted(
            {
                p["topic"]
                for n in graph_nodes(include_hidden=True)
                for p in n["publishers"]
                if not n["name"].startswith("/_percept_record")
            }
        )
        for topic in wanted:
            if topic not in subscriptions:
                subscribe(topic)
                print(f"recording {topic}", flush=True)

    discover()
    node.create_timer(1.0, discover)
    stop = {"now": False}
    signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    deadline = None if args.duration is None else time.monotonic() + args.duration
    try:
        while not stop["now"] and (deadline is None or time.monotonic() < deadline):
            node.spin_once(0.05)
        # What is already on its way is written too: drain until nothing has come for QUIET_S.
        quiet_since, written, give_up = time.monotonic(), recorder.messages, time.monotonic() + 30
        while time.monotonic() - quiet_since < QUIET_S and time.monotonic() < give_up:
            node.spin_once(0.01)
            if recorder.messages != written:
                quiet_since, written = time.monotonic(), recorder.messages
    finally:
        recorder.close()
        dropped = sum(s.stats.dropped_queue + s.stats.dropped_gap for s in subscriptions.values())
        node.destroy()
    print(
        f"wrote {recorder.messages} messages ({recorder.bytes / 2**20:.1f} MB) on {len(subscriptions)} topics "
        f"to {args.output}; dropped {dropped}"
        + (f"; {recorder.view_errors} messages had no Foxglove view" if recorder.view_errors else "")
    )
    return 0


def _play(args: argparse.Namespace) -> int:
    from perception import msgs
    from perception.cli.common import cli_node
    from perception.errors import MessageError, PerceptError
    from perception.recording import read, topics_of

    if not args.file.is_file():
        raise PerceptError(f"recording {args.file}: no such file")
    if args.rate <= 0:
        raise PerceptError(f"--rate: expected a positive factor, found {args.rate}")
    node = cli_node("play")
    publishers: dict[str, Any] = {}
    stop = {"now": False}
    signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    for topic, type_name in topics_of(args.file).items():
        if args.topics and topic not in args.topics:
            continue
        try:
            publishers[topic] = node.create_publisher(msgs.message_type(type_name), topic)
        except MessageError as exc:
            print(f"skipping {topic}: {exc}", flush=True)
    deadline = time.monotonic() + 2.0  # give subscribers a moment to connect before the first message
    while time.monotonic() < deadline and not all(p.subscriber_count for p in publishers.values()):
        node.spin_once(0.05)
    played = 0
    try:
        while not stop["now"]:
            start_wall, start_log = time.monotonic(), None
            for item in read(args.file, args.topics):
                publisher = publishers.get(item.topic)
                if stop["now"]:
                    break
                if publisher is None:
                    continue
                start_log = item.log_time_ns if start_log is None else start_log
                due = start_wall + (item.log_time_ns - start_log) / 1e9 / args.rate
                while (wait := due - time.monotonic()) > 0 and not stop["now"]:
                    node.spin_once(min(wait, 0.05))
                publisher.publish_frames(item.frames)
                played += 1
            if not args.loop:
                break
        for _ in range(10):  # let the last messages leave
            node.spin_once(0.02)
    finally:
        node.destroy()
    print(f"played {played} messages from {args.file}")
    return 0
