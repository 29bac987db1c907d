"""percept topic list | info | type | find | echo | hz | bw | pub"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
import typing
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from perception import msgs
from perception.cli.common import (
    did_you_mean,
    format_value,
    message_fields,
    non_negative_float,
    non_negative_int,
    positive_float,
    yaml_argument,
)
from perception.cli.interface import find
from perception.errors import MessageError, PerceptError
from perception.runtime.graph import graph_nodes, tool_node
from perception.runtime.node import RECEIVE_HWM
from perception.runtime.qos import KEEP_LAST, QoS


def register(verbs: Any) -> None:
    topic = verbs.add_parser("topic", help="Inspect and publish topics.").add_subparsers(
        dest="action", required=True
    )
    p = topic.add_parser("list", help="List topics with their types.")
    p.add_argument("-v", "--verbose", action="store_true", help="show publisher and subscriber counts")
    p.add_argument(  # `ros2 topic list -t` by habit
        "-t", "--show-types", action="store_true", help="accepted as ros2 has it; the types are always shown"
    )
    p.set_defaults(func=_list)

    p = topic.add_parser("info", help="A topic's type, publishers and subscribers (with QoS and addresses).")
    p.add_argument("topic")
    p.add_argument("-v", "--verbose", action="store_true", help="list each publisher and subscriber")
    p.set_defaults(func=_info)

    p = topic.add_parser("type", help="Print a topic's message type.")
    p.add_argument("topic")
    p.set_defaults(func=_type)

    p = topic.add_parser("find", help="List the topics of a message type.")
    p.add_argument("type", help="a message type, e.g. percept/Image (or Image)")
    p.set_defaults(func=_find)

    p = topic.add_parser("echo", help="Print messages from a topic.")
    p.add_argument("topic")
    p.add_argument("--once", action="store_true", help="print one message and exit")
    p.add_argument(
        "--count",
        type=non_negative_int,
        default=0,
        help="exit after this many messages (default 0: no limit)",
    )
    p.add_argument(
        "--timeout",
        type=non_negative_float,
        default=0.0,
        help="seconds: exit with an error if nothing arrives in time (default 0: no limit)",
    )
    p.add_argument("--full", action="store_true", help="print whole arrays (2-D ones a row a line)")
    p.add_argument("--field", help="print only this field, e.g. header.stamp or xyxy")
    p.add_argument(
        "--wait", action="store_true", help="wait for a publisher where nobody publishes the topic"
    )
    p.set_defaults(func=_echo)

    p = topic.add_parser("hz", help="Print the rate of a topic.")
    p.add_argument("topic")
    p.add_argument("--window", type=int, default=100, help="messages in the rate window (default 100)")
    p.add_argument(
        "--duration",
        type=non_negative_float,
        default=0.0,
        help="exit after this many seconds, with exit code 1 if no message came (default 0: until stopped)",
    )
    p.add_argument(
        "--wait", action="store_true", help="wait for a publisher where nobody publishes the topic"
    )
    p.set_defaults(func=_hz)

    p = topic.add_parser("bw", help="Print the bandwidth of a topic.")
    p.add_argument("topic")
    p.add_argument("--window", type=int, default=100, help="messages in the window (default 100)")
    p.add_argument(
        "--duration",
        type=non_negative_float,
        default=0.0,
        help="exit after this many seconds, with exit code 1 if no message came (default 0: until stopped)",
    )
    p.add_argument(
        "--wait", action="store_true", help="wait for a publisher where nobody publishes the topic"
    )
    p.set_defaults(func=_bw)

    p = topic.add_parser("pub", help="Publish a message built from YAML.")
    p.add_argument("topic")
    p.add_argument("type", help="message type, e.g. percept/String")
    p.add_argument(
        "values",
        nargs="?",
        default="{}",
        help="fields as YAML, e.g. '{data: hello}' (default {}: the type's defaults)",
    )
    p.add_argument("--rate", type=positive_float, default=1.0, help="messages per second (default 1)")
    p.add_argument(
        "--times",
        type=non_negative_int,
        default=0,
        help="publish this many messages and exit (default 0: forever)",
    )
    p.add_argument("--once", action="store_true", help="publish one message and exit")
    p.add_argument(
        "--wait",
        type=non_negative_float,
        default=2.0,
        help="seconds to wait for a subscriber first (default 2; 0: none)",
    )
    p.set_defaults(func=_pub)


def _list(args: argparse.Namespace) -> int:
    topics = _topics()
    for name in sorted(topics):
        entry = topics[name]
        types = ", ".join(sorted(entry["types"])) or "?"
        counts = (
            f"  {len(entry['publishers'])} publisher(s), {len(entry['subscribers'])} subscription(s)"
            if args.verbose
            else ""
        )
        print(f"{name} [{types}]{counts}")
    return 0


def _topics() -> dict[str, dict[str, Any]]:
    """Every topic of the graph: its types, and its publishers and subscribers (node, details)."""
    topics: dict[str, dict[str, Any]] = {}
    for node in graph_nodes(include_hidden=True):
        where = {"node": node["name"], "pid": node.get("pid"), "host": node.get("host")}
        for pub in node["publishers"]:
            entry = topics.setdefault(pub["topic"], {"types": set(), "publishers": [], "subscribers": []})
            entry["types"].add(pub["type"])
            entry["publishers"].append({**where, "address": pub.get("endpoint", "")})
        for sub in node["subscriptions"]:
            entry = topics.setdefault(sub["topic"], {"types": set(), "publishers": [], "subscribers": []})
            if sub["type"] != "*":
                entry["types"].add(sub["type"])
            entry["subscribers"].append({**where, "depth": sub.get("depth")})
    return topics


def _known_topic(name: str) -> dict[str, Any]:
    topics = _topics()
    if name not in topics:
        raise PerceptError(
            f"no topic {name} in the graph{did_you_mean(name, list(topics))} (percept topic list)"
        )
    return topics[name]


def _info(args: argparse.Namespace) -> int:
    entry = _known_topic(args.topic)
    print(f"Type: {', '.join(sorted(entry['types'])) or '?'}")
    for kind, key in (("Publisher", "publishers"), ("Subscription", "subscribers")):
        people = entry[key]
        print(f"{kind} count: {len(people)}")
        if not args.verbose:
            continue
        for who in people:
            if key == "publishers":
                detail = f"address {who['address']}"
            else:
                depth = who["depth"]
                detail = "QoS " + (
                    "latest only (depth 1)" if depth == 1 else f"keep last {depth}" if depth else "?"
                )
            print(f"  {who['node']}  (pid {who['pid']} on {who['host']})  {detail}")
    return 0


def _type(args: argparse.Namespace) -> int:
    print(", ".join(sorted(_known_topic(args.topic)["types"])) or "?")
    return 0


def _find(args: argparse.Namespace) -> int:
    from perception.cli.interface import find

    wanted = find(args.type).TYPE_NAME
    for name, entry in sorted(_topics().items()):
        if wanted in entry["types"]:
            print(name)
    return 0


def _spin_until(
    node: Any,
    done: Any,
    duration: float,
    timeout: float,
    topic: str,
    got: list[int],
    wait: bool,
    notice_s: float = 1.0,
) -> int:
    """Spin until `done()`. After `notice_s` without a message, say whether anyone publishes the topic:
    where nobody does, give up at once unless asked to wait (`--wait`, or a `--timeout`/`--duration`)."""
    start = time.monotonic()
    noticed = False
    while not done():
        node.spin_once(0.1)
        elapsed = time.monotonic() - start
        if duration and elapsed >= duration:
            if not got[0]:  # as a --timeout that ran out: the exit status says nothing came
                raise PerceptError(f"no message on {topic} within {duration:g} s")
            return 0
        if timeout and not got[0] and elapsed >= timeout:
            raise PerceptError(f"no message on {topic} within {timeout:g} s")
        if not noticed and not got[0] and elapsed >= notice_s:
            noticed = True
            nobody, text = topic_silence(topic)
            if nobody and not (wait or timeout or duration):
                raise PerceptError(f"{text}; --wait waits for a publisher")
            print(f"{text}; waiting" + ("" if nobody else " (Ctrl-C to stop)"), file=sys.stderr, flush=True)
    return 0


def topic_silence(topic: str) -> tuple[bool, str]:
    """Whether nobody publishes the topic (as far as the registry knows), and what to say about it (the
    other commands that wait on a topic, `calibrate camera --topic`, say it in these words too)."""
    try:
        topics = _topics()
    except PerceptError:
        return False, f"nothing on {topic} yet, and the registry does not answer"
    publishers = len(topics.get(topic, {}).get("publishers", []))
    if publishers:
        return False, f"nothing on {topic} yet from its {publishers} publisher(s)"
    hint = did_you_mean(topic, [t for t, e in topics.items() if e["publishers"]])
    return True, f"nobody publishes {topic}{hint}"


def _echo(args: argparse.Namespace) -> int:
    limit = 1 if args.once else args.count
    got = [0]

    # Raised in a callback, the executor would only log it (a BrokenPipeError with its traceback, for
    # `percept topic echo T | head`, every message after): raised again here, main() ends the command.
    failed: list[PerceptError | BrokenPipeError] = []

    def show(msg: Any) -> None:
        if (limit and got[0] >= limit) or failed:
            return
        try:
            value = _pick(msg, args.field) if args.field else msg
        except PerceptError as exc:
            failed.append(exc)
            return
        got[0] += 1
        try:
            print(format_value(value, full=args.full))
            print("---", flush=True)
        except BrokenPipeError as exc:  # the reader has gone
            failed.append(exc)

    with tool_node("echo") as node:
        node.create_subscription(None, args.topic, show, KEEP_LAST)
        done = lambda: bool(failed) or (bool(limit) and got[0] >= limit)  # noqa: E731
        _spin_until(node, done, 0.0, args.timeout, args.topic, got, args.wait)
    if failed:
        raise failed[0]
    return 0


def _pick(msg: Any, path: str) -> Any:
    """A field of a message by a dotted path (`header.stamp`); an unknown one names the fields there."""
    value = msg
    parts = path.split(".")
    for depth, part in enumerate(parts):
        is_message = hasattr(value, "__dataclass_fields__")
        is_unknown_message = hasattr(value, "type_name") and hasattr(value, "fields")
        fields = message_fields(value) if is_message else value.fields if is_unknown_message else {}
        where = ".".join(parts[:depth])
        if not (is_message or is_unknown_message):  # "(fields: )" would say nothing
            raise PerceptError(
                f"--field {path}: {where} is a value ({type(value).__name__} {_short(value)}), "
                f"not a message with fields; found {part!r}"
            )
        if not fields:
            kind = getattr(value, "TYPE_NAME", None) or getattr(value, "type_name", "")
            raise PerceptError(
                f"--field {path}: {f'{where} ({kind})' if where else kind} has no fields; found {part!r}"
            )
        if part not in fields:
            raise PerceptError(
                f"--field {path}: no field {part!r}{did_you_mean(part, list(fields))} (fields: {', '.join(fields)})"
            )
        value = value.fields[part] if is_unknown_message else getattr(value, part)
    return value


def _short(value: Any) -> str:
    """A value as an error names it: an array by its shape, anything else by its text, cut short."""
    if isinstance(value, np.ndarray):
        return f"of shape {tuple(value.shape)}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _watch(args: argparse.Namespace, report: Callable[[deque[tuple[float, int]]], str]) -> int:
    """Record (arrival time, bytes) of the last `--window` messages and print `report(window)` each
    second. The frames are never decoded, and the queue is deep enough that a flood is measured, not
    evicted before it is counted."""
    if args.window < 2:
        raise PerceptError(f"--window: expected at least 2 messages (a rate needs two), found {args.window}")
    window: deque[tuple[float, int]] = deque(maxlen=args.window)
    got = [0]
    shown = [0]  # messages counted at the last report: none since then means the topic went quiet
    silent_ticks = [0]  # reports with nothing ever received

    def arrived(frames: Any) -> None:
        got[0] += 1
        window.append((time.monotonic(), sum(len(f) for f in frames)))

    def show() -> None:
        fresh = got[0] != shown[0]
        shown[0] = got[0]
        if fresh and len(window) >= 2:
            print(report(window), flush=True)
        elif got[0]:
            print("no new messages", flush=True)
        else:  # nothing ever came: say why, not a bare "no new messages"
            silent_ticks[0] += 1
            if silent_ticks[0] > 1:  # the first second's silence _spin_until reports, or ends the command for
                print(topic_silence(args.topic)[1], flush=True)

    with tool_node("watch") as node:
        node.create_subscription(None, args.topic, arrived, QoS(depth=RECEIVE_HWM), raw=True)
        node.create_timer(1.0, show)
        return _spin_until(node, lambda: False, args.duration, 0.0, args.topic, got, args.wait)


def _hz(args: argparse.Namespace) -> int:
    def report(window: deque[tuple[float, int]]) -> str:
        periods = np.diff([t for t, _ in window])
        return (
            f"average rate: {1.0 / periods.mean():.3f}\n"
            f"\tmin: {periods.min():.3f}s max: {periods.max():.3f}s std dev: {periods.std():.5f}s "
            f"window: {len(periods)}"
        )

    return _watch(args, report)


def _bw(args: argparse.Namespace) -> int:
    def report(window: deque[tuple[float, int]]) -> str:
        span = window[-1][0] - window[0][0]
        total = sum(size for _, size in window)
        rate = total / span if span > 0 else math.nan
        return f"{_human(rate)}/s from {len(window)} messages\n\tMessage size mean: {_human(total / len(window))}"

    return _watch(args, report)


def _human(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(nbytes) < 1000:
            return f"{nbytes:.2f} {unit}"
        nbytes /= 1000
    return f"{nbytes:.2f} TB"


def build_message(type_name: str, values: Any) -> msgs.Message:
    """A message from YAML values: a missing `header` is stamped now, lists become arrays; a value of the
    wrong kind (text for a number, a number for text) is refused, naming the field."""
    cls = find(type_name)
    name_of = cls.TYPE_NAME
    if not isinstance(values, dict):
        raise MessageError(f"{name_of}: expected a map of field values, found {values!r}")
    hints = typing.get_type_hints(cls)
    names = [field.name for field in dataclasses.fields(cls)]  # type: ignore[arg-type]
    fields = dict(values)
    if "header" in names and "header" not in fields:
        fields["header"] = msgs.Header.now()
    for name, value in list(fields.items()):
        if not names:
            raise MessageError(f"{name_of} has no fields, so takes no values; found {name!r}")
        if name not in names:
            raise MessageError(
                f"{name_of} has no field {name!r}{did_you_mean(str(name), names)} (fields: {', '.join(names)})"
            )
        fields[name] = _field_value(f"{name_of}.{name}", hints[name], value)
    if cls is msgs.Image and isinstance(fields.get("data"), np.ndarray):
        fields["data"] = _as_encoded(fields["data"], fields.get("encoding", "rgb8"))
    try:
        return cls(**fields)
    except (TypeError, ValueError) as exc:
        raise MessageError(f"{name_of}: {exc}") from None


def _as_encoded(data: np.ndarray, encoding: Any) -> np.ndarray:
    """YAML's numbers come as int64 or float64, where an image's encoding fixes its dtype (mono8 is
    uint8): cast when every value survives it; otherwise Image names the mismatch."""
    dtype = msgs.IMAGE_ENCODINGS.get(encoding, (data.dtype, 0))[0]
    if data.dtype == dtype:
        return data
    with np.errstate(all="ignore"):
        cast = data.astype(dtype)
    return cast if np.array_equal(cast, data) else data


def _field_value(where: str, hint: Any, value: Any) -> Any:
    """`value` as field `where` of type `hint` takes it (a map for a message, a list for an array; the
    rest as msgs.field_value takes it), or a MessageError saying what was expected."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)

    def refuse(expected: str) -> MessageError:
        return MessageError(f"{where}: expected {expected}, found {type(value).__name__} {value!r}")

    if isinstance(hint, type) and issubclass(hint, msgs.Message):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise refuse(f"a map of {hint.TYPE_NAME} fields")
        return build_message(hint.TYPE_NAME, value)
    if origin is list and args and isinstance(args[0], type) and issubclass(args[0], msgs.Message):
        if not isinstance(value, list):
            raise refuse(f"a list of {args[0].TYPE_NAME} maps")
        return [_field_value(f"{where}[{i}]", args[0], item) for i, item in enumerate(value)]
    if hint is np.ndarray:
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise refuse("numbers (a list, or a list of lists)")
        return array
    if hint is str and isinstance(value, int | float):  # YAML read an unquoted word as a number
        raise refuse(f'text (in quotes: "{value}")')
    return msgs.field_value(where, hint, value)


def _pub(args: argparse.Namespace) -> int:
    values = yaml_argument(args.values, "message") or {}
    cls = find(args.type)
    # A mistyped field is named now, not after the wait for a subscriber; each message is built again
    # when it is sent, so that its header is stamped then.
    build_message(args.type, values)
    times = 1 if args.once else args.times
    with tool_node("pub") as node:
        publisher = node.create_publisher(cls, args.topic)
        if args.wait and not publisher.wait_for_subscribers(1, args.wait):
            print(f"no subscriber on {publisher.topic} after {args.wait:g} s; publishing anyway", flush=True)
        sent = 0
        period = 1.0 / args.rate
        next_send = time.monotonic()
        while not times or sent < times:
            msg = build_message(args.type, values)
            publisher.publish(msg)
            sent += 1
            print(f"publishing #{sent}: {format_value(msg)}".replace("\n", " "), flush=True)
            next_send += period
            while (delay := next_send - time.monotonic()) > 0 and (not times or sent < times):
                node.spin_once(min(delay, 0.1))
        node.spin_once(0.2)  # let the last message leave before the socket closes
    return 0
