"""percept bag info: what a recording holds, like `ros2 bag info`; percept bag convert: to and from
rosbag2 (perception/recording/rosbag2.py; the ros2 extra)."""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path
from typing import Any


def register(verbs: Any) -> None:
    bag = verbs.add_parser("bag", help="Look into recordings.").add_subparsers(
        dest="bag_verb", metavar="VERB", required=True
    )
    p = bag.add_parser("info", help="Duration, size, compression, and messages per topic with their rates.")
    p.add_argument("file", type=Path, help="an MCAP recording")
    p.set_defaults(func=_info)
    p = bag.add_parser(
        "convert",
        help="A rosbag2 bag (folder, MCAP or sqlite3) to our recording, or ours to a rosbag2 bag (MCAP, CDR).",
    )
    p.add_argument("source", type=Path, help="a rosbag2 folder, or one of our .mcap recordings")
    p.add_argument("out", type=Path, help="our .mcap (from a bag), or a new rosbag2 folder (from ours)")
    p.add_argument(
        "-r",
        "--remap",
        action="append",
        default=[],
        metavar="FROM:=TO",
        help="rename a topic on the way; repeatable",
    )
    p.set_defaults(func=_convert)


def _split(info: Any) -> str:
    """What the message count holds besides our topics' messages (the views stored beside them for
    Foxglove, other tools' channels): `record` counted ours alone, and the two totals disagreed."""
    kinds = [
        (sum(t.count for t in info.topics if t.stored_as == kind), label)
        for kind, label in (("view", "Foxglove views"), ("other", "other channels"))
    ]
    extra = [f"{count} {label}" for count, label in kinds if count]
    if not extra:
        return ""
    ours = info.messages - sum(count for count, _ in kinds)
    return f" ({ours} on our topics, {', '.join(extra)})"


def _info(args: argparse.Namespace) -> int:
    from perception.recording.mcap_file import describe

    info = describe(args.file)
    duration = info.duration_s
    lines = [
        f"Files:             {info.path}",
        f"Bag size:          {_size(info.size_bytes)}",
        f"Storage id:        mcap (chunks compressed: {info.compression})",
        f"Duration:          {duration:.3f}s",
        f"Start:             {_when(info.start_ns) if info.messages else '-'}",
        f"End:               {_when(info.end_ns) if info.messages else '-'}",
        f"Messages:          {info.messages}{_split(info)}",
    ]
    if info.torn:
        lines.append(f"Torn:              the file ends early ({info.torn}): counted what comes before")
    ours = sorted((t for t in info.topics if t.stored_as not in ("view", "other")), key=lambda t: t.topic)
    views = sorted((t for t in info.topics if t.stored_as == "view"), key=lambda t: t.topic)
    others = sorted((t for t in info.topics if t.stored_as == "other"), key=lambda t: t.topic)
    width = max((len(t.topic) for t in info.topics), default=0)
    lines.append("Topic information: " + ("" if ours else "none"))
    for t in ours:
        # Messages over the time between the bag's first and last: a topic that starts late reads low.
        rate = (t.count - 1) / duration if duration > 0 and t.count > 1 else 0.0
        stored = "" if t.stored_as == "percept-wire" else f" | Stored as: {t.stored_as}"
        lines.append(
            f"  Topic: {t.topic:<{width}} | Type: {t.type_name} | Count: {t.count} | Rate: {rate:.1f} Hz{stored}"
        )
    for heading, channels in (("Foxglove views:", views), ("Other channels (not percept's):", others)):
        if channels:
            lines.append(heading)
            lines += [
                f"  Topic: {t.topic:<{width}} | Type: {t.type_name} | Count: {t.count}" for t in channels
            ]
    print("\n".join(lines))
    return 0


def _convert(args: argparse.Namespace) -> int:
    from perception.errors import PerceptError
    from perception.installed import require
    from perception.runtime.runner import split_assignment

    require("rosbags", "percept bag convert")
    from perception.recording import rosbag2

    remap = dict(split_assignment(item, "remapping") for item in args.remap)
    if rosbag2.is_rosbag2(args.source):
        done = rosbag2.from_rosbag2(args.source, args.out, remap)
        direction = "rosbag2 -> percept"
    elif args.source.is_file():
        from perception.recording.mcap_file import profile_of

        if profile_of(args.source) == "ros2":
            raise PerceptError(
                f"{args.source}: one file of a rosbag2 bag; give the bag's folder (with metadata.yaml; "
                "`ros2 bag reindex` makes one for a bag that has lost it)"
            )
        done = rosbag2.to_rosbag2(args.source, args.out, remap)
        direction = "percept -> rosbag2"
    else:
        raise PerceptError(
            f"{args.source}: expected a rosbag2 folder (with metadata.yaml) or one of our .mcap recordings"
        )
    print(f"{direction}: wrote {args.out}: {done.summary()}")
    for topic, type_name in sorted(done.topics.items()):
        print(f"  {topic} [{type_name}]")
    return 0


def _size(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{size} B"
        size /= 1024  # type: ignore[assignment]
    return f"{size} B"


def _when(ns: int) -> str:
    stamp = datetime.datetime.fromtimestamp(ns / 1e9, tz=datetime.UTC)
    return f"{stamp:%b %d %Y %H:%M:%S.%f} ({ns / 1e9:.6f})"
