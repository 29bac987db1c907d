"""percept record / percept play: MCAP recordings of any topics, replayed with their original timing."""

from __future__ import annotations

import argparse
import collections
import signal
import sys
import time
from pathlib import Path
from typing import Any

from perception.cli.common import (
    check_new_output,
    did_you_mean,
    non_negative_float,
    overwrite_option,
    positive_float,
)
from perception.recording import COMPRESSIONS, IMAGE_FORMATS
from perception.runtime.qos import JOIN_WAIT_S

QUIET_S = 0.3  # on stop, the recorder writes until its topics have been quiet this long,
DRAIN_S = 1.0  # or this long at most: a 30 Hz camera is never quiet (a second Ctrl-C stops at once)


def register(verbs: Any) -> None:
    p = verbs.add_parser("record", help="Record topics to an MCAP file (all topics when none is named).")
    p.add_argument("topics", nargs="*", help="topics to record (default: every topic, as they appear)")
    p.add_argument("-o", "--output", type=Path, required=True, help="the .mcap file to write (a new one)")
    overwrite_option(p, "the file at --output")
    p.add_argument("--duration", type=positive_float, help="stop after this many seconds (default: Ctrl-C)")
    p.add_argument(
        "--no-foxglove",
        dest="foxglove",
        action="store_false",
        help="skip the Foxglove views (/foxglove/...) of boxes, tracks and grasps (images are always "
        "stored in Foxglove's image schemas)",
    )
    p.add_argument(
        "--compression", choices=COMPRESSIONS, default="zstd", help="MCAP chunk compression (default zstd)"
    )
    p.add_argument(
        "--image-format",
        choices=IMAGE_FORMATS,
        default="raw",
        help="how images are stored: raw and png are lossless (play gives the same bytes), jpeg is not "
        "(for long runs); default raw",
    )
    p.set_defaults(func=_record)

    p = verbs.add_parser("play", help="Publish an MCAP recording again, with its original timing.")
    p.add_argument("file", type=Path)
    p.add_argument("--rate", type=positive_float, default=1.0, help="speed factor (2: twice as fast)")
    p.add_argument("--loop", action="store_true", help="start again at the end")
    p.add_argument("--topics", nargs="*", help="only these topics (default: all)")
    p.add_argument(
        "--wait",
        type=non_negative_float,
        default=JOIN_WAIT_S,
        help=f"seconds to wait for a subscriber on every played topic first (default {JOIN_WAIT_S:g})",
    )
    p.set_defaults(func=_play)


def _record(args: argparse.Namespace) -> int:
    from perception.errors import PerceptError
    from perception.recording.mcap_file import McapRecorder
    from perception.runtime.graph import graph_nodes, tool_node
    from perception.runtime.qos import QoS
    from perception.runtime.wire import peek_type

    check_new_output(args.output, f"recording {args.output}", args.overwrite)
    node = tool_node("record")
    subscriptions: dict[str, Any] = {}
    write_errors: list[str] = []
    keep_all = QoS(depth=10_000)  # a recorder keeps everything; what it cannot keep is counted

    def subscribe(topic: str) -> None:
        def write(frames: list[Any]) -> None:
            received = time.time_ns()
            try:
                recorder.write(topic, peek_type(frames), frames[1:], received, received)
            except OSError as exc:  # a full disk: stop, and keep what was written readable
                write_errors.append(f"{exc.strerror or exc}")
                stop["now"] += 1

        subscriptions[topic] = node.create_subscription(None, topic, write, keep_all, raw=True)

    unpublished: set[str] = set()  # named topics already said to have no publisher

    def discover() -> None:
        published = {
            p["topic"]
            for n in graph_nodes(include_hidden=True)  # asked even for named topics: is there a graph?
            for p in n["publishers"]
            if not n["name"].startswith("/_percept_record")
        }
        for topic in args.topics or sorted(published):
            if topic not in subscriptions:
                subscribe(topic)
                print(f"recording {topic}", flush=True)
            if topic not in published and topic not in unpublished:  # a typo, or a node still to come
                unpublished.add(topic)
                print(
                    f"nobody publishes {topic} yet{did_you_mean(topic, published)}; recording it once one does",
                    file=sys.stderr,
                    flush=True,
                )

    stop = {"now": 0}  # signals received: the first stops recording, a second stops draining too

    def on_signal(*_: Any) -> None:
        stop["now"] += 1

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        discover()  # before the file exists: without a registry there is nothing to write
        recorder = McapRecorder(
            args.output, foxglove=args.foxglove, compression=args.compression, image_format=args.image_format
        )
    except BaseException:
        node.destroy()
        raise
    if not args.topics:  # named topics were all subscribed (and any without a publisher named) at once
        node.create_timer(1.0, discover)
    deadline = None if args.duration is None else time.monotonic() + args.duration
    try:
        while not stop["now"] and (deadline is None or time.monotonic() < deadline):
            node.spin_once(0.05)
        # What is already on its way is written too: drain until nothing has come for QUIET_S.
        quiet_since, written, give_up = time.monotonic(), recorder.messages, time.monotonic() + DRAIN_S
        while (
            time.monotonic() - quiet_since < QUIET_S
            and time.monotonic() < give_up
            and stop["now"] < 2
            and not write_errors
        ):
            node.spin_once(0.01)
            if recorder.messages != written:
                quiet_since, written = time.monotonic(), recorder.messages
    finally:
        try:
            recorder.close()
        except OSError as exc:
            write_errors.append(f"closing: {exc.strerror or exc}")
        lost = {
            "dropped": sum(s.stats.dropped_queue + s.stats.dropped_gap for s in subscriptions.values()),
            "malformed": sum(s.stats.malformed for s in subscriptions.values()),
            "not written": sum(s.stats.callback_errors for s in subscriptions.values()),
        }
        node.destroy()
    print(
        f"wrote {recorder.messages} messages ({recorder.bytes / 2**20:.1f} MB, {_size_mb(args.output):.1f} MB "
        f"on disk with {args.compression}) on {len(subscriptions)} topics to {args.output}; "
        f"dropped {lost['dropped']}"
        + "".join(f", {count} {what}" for what, count in lost.items() if what != "dropped" and count)
        + (f"; {recorder.view_errors} messages had no Foxglove view" if recorder.view_errors else "")
        + (
            f"; {recorder.images_kept_as_wire} images this version cannot read were kept as they came"
            if recorder.images_kept_as_wire
            else ""
        )
    )
    if write_errors:
        raise PerceptError(f"recording {args.output}: stopped writing: {write_errors[0]}")
    return 0


def _size_mb(path: Path) -> float:
    try:
        return path.stat().st_size / 2**20
    except OSError:
        return 0.0


def _play(args: argparse.Namespace) -> int:
    from perception import msgs
    from perception.errors import MessageError, PerceptError
    from perception.recording.mcap_file import read, recorded_topics
    from perception.runtime.graph import tool_node

    recorded = recorded_topics(args.file)
    missing = sorted(set(args.topics or []) - set(recorded))
    if missing:
        raise PerceptError(
            f"recording {args.file}: no topic {missing[0]}; it holds {', '.join(sorted(recorded))}"
        )
    node = tool_node("play")
    publishers: dict[str, Any] = {}
    stop = {"now": False}
    signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    for topic, type_name in recorded.items():
        if args.topics and topic not in args.topics:
            continue
        if not type_name:  # a channel of ours whose schema is missing
            print(f"skipping {topic}: its channel names no message type (no schema)", flush=True)
            continue
        try:
            publishers[topic] = node.create_publisher(msgs.message_type(type_name), topic)
        except MessageError as exc:
            print(f"skipping {topic}: {exc}", flush=True)
    deadline = time.monotonic() + args.wait  # give subscribers a moment to connect before the first message
    while time.monotonic() < deadline and not all(p.subscriber_count for p in publishers.values()):
        node.spin_once(0.05)
    played = 0
    torn: list[str] = []
    skipped: list[str] = []
    foreign: collections.Counter[str] = collections.Counter()
    backwards = 0  # messages whose log time is before the one played before them (no index to sort by)
    start_log: int | None = None
    last_log = 0
    try:
        while not stop["now"]:
            start_wall, start_log, played_before = time.monotonic(), None, played
            torn, first_pass = [], played == 0
            for item in read(args.file, args.topics, torn, skipped, foreign if first_pass else None):
                publisher = publishers.get(item.topic)
                if stop["now"]:
                    break
                if publisher is None:
                    continue
                start_log = item.log_time_ns if start_log is None else start_log
                backwards += first_pass and item.log_time_ns < last_log
                last_log = item.log_time_ns
                due = start_wall + (item.log_time_ns - start_log) / 1e9 / args.rate
                while (wait := due - time.monotonic()) > 0 and not stop["now"]:
                    node.spin_once(min(wait, 0.05))
                publisher.publish_frames(item.frames)
                played += 1
            if not args.loop or played == played_before:  # a pass that plays nothing would spin forever
                break
        for _ in range(10):  # let the last messages leave
            node.spin_once(0.02)
    finally:
        node.destroy()
    print(f"played {played} messages from {args.file}")
    if torn:
        span = f", {(last_log - start_log) / 1e9:.3f} s of it" if start_log is not None else ""
        print(f"the recording ends torn ({torn[0]}): played what came before{span}", file=sys.stderr)
    if backwards:
        print(
            f"{backwards} messages were stored before earlier ones and the file has no index to sort them "
            "by: played in the order stored",
            file=sys.stderr,
        )
    if foreign:
        print(
            f"left out {sum(foreign.values())} messages of channels not percept's: "
            + ", ".join(f"{topic} ({n})" for topic, n in foreign.most_common(5))
            + (f" and {len(foreign) - 5} more channels" if len(foreign) > 5 else ""),
            file=sys.stderr,
        )
    if skipped:
        print(
            f"left out {len(skipped)} stored image(s) that did not decode (first: {skipped[0]})",
            file=sys.stderr,
        )
    return 0
