"""Property-based fuzzing of every entry point a peer or a file reaches (issue 22, deliver 4): the wire
decoder, the registry protocol, the parameter services and the launch-file parser. Each case must be
taken or rejected with the documented error, and is counted; none may raise anything else.

CI runs a seeded sample (PERCEPT_FUZZ_CASES cases per entry point, 200 by default, the same cases every
run); the campaign is `scripts/fuzz.sh` (100,000 cases per entry point, random, counts printed):
docs/reliability.md has its figures.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from typing import Any

import msgpack
import numpy as np
import pytest
import yaml
from conftest import free_port
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perception import msgs
from perception.errors import LaunchError, MalformedMessage
from perception.msgs import Result, SetParameters
from perception.runtime import launch_file, wire
from perception.runtime.harness import NodeHarness
from perception.runtime.registry import Registry

CASES = int(os.environ.get("PERCEPT_FUZZ_CASES", "200"))
CAMPAIGN = CASES > 1000
settings.register_profile(
    "percept-fuzz",
    max_examples=CASES,
    derandomize=not CAMPAIGN,  # CI: the same seeded cases every run; a campaign: new ones each time
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
FUZZ = settings.get_profile("percept-fuzz")
OUTCOMES: Counter[str] = Counter()  # entry point and outcome -> cases, printed at the end


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    for key, count in sorted(OUTCOMES.items()):
        print(f"fuzz {key}: {count}")


# -- values a peer can put in msgpack --------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what msgpack can carry
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
array_refs = st.builds(
    lambda index, dtype, shape: msgpack.ExtType(1, msgpack.packb([index, dtype, shape])),
    st.one_of(st.integers(-2, 4), st.text(max_size=3)),
    st.sampled_from(["|u1", "<f4", "<i8", "|b1", "<U4", "|O", "<c8", "garbage", "<f8"]),
    st.lists(st.integers(-3, 70), max_size=4),
)
values = st.recursive(
    scalars | array_refs | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8)),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=10) | st.integers(-3, 3), inner, max_size=4)
    ),
    max_leaves=12,
)
type_names = st.sampled_from(sorted(msgs.registered_types())) | st.text(max_size=16)
field_names = st.sampled_from(
    ["header", "data", "encoding", "xyxy", "scores", "seq", "stamp", "frame_id", "x"]
)


@st.composite
def headers(draw: Any) -> dict[Any, Any]:
    header: dict[Any, Any] = {
        "type": draw(type_names | scalars),
        "version": draw(st.integers(-2, 4) | scalars),
        "fields": draw(st.dictionaries(field_names | st.text(max_size=6), values, max_size=5) | values),
        "src": draw(st.text(max_size=8) | scalars),
        "n": draw(st.integers(-(2**63), 2**64 - 1) | scalars),
    }
    for key in draw(st.lists(st.sampled_from(list(header)), max_size=2, unique=True)):
        del header[key]  # a header that lacks what it must have
    return header


@st.composite
def real_messages(draw: Any) -> list[bytes]:
    """A message our publisher would send, then perhaps damaged: a byte changed, a frame cut or added."""
    header = msgs.Header(
        stamp=draw(st.integers(0, 2**63 - 1)), frame_id=draw(st.text(max_size=5)), seq=draw(st.integers(0, 9))
    )
    if draw(st.booleans()):
        shape = draw(st.tuples(st.integers(1, 6), st.integers(1, 6), st.sampled_from([1, 3])))
        msg: msgs.Message = msgs.Image(
            header=header, data=np.zeros(shape, np.uint8), encoding="mono8" if shape[2] == 1 else "rgb8"
        )
    else:
        msg = msgs.String(data=draw(st.text(max_size=30)))
    frames = [bytes(wire.byte_view(f)) for f in wire.encode(b"/x", msg, "src", draw(st.integers(0, 5)))]
    damage = draw(st.sampled_from(["none", "byte", "cut", "extra"]))
    if damage == "byte":
        index = draw(st.integers(1, len(frames) - 1))
        if frames[index]:
            at = draw(st.integers(0, len(frames[index]) - 1))
            frames[index] = frames[index][:at] + bytes([draw(st.integers(0, 255))]) + frames[index][at + 1 :]
    elif damage == "cut":
        frames = frames[: draw(st.integers(0, len(frames) - 1))]
    elif damage == "extra":
        frames.append(draw(st.binary(max_size=16)))
    return frames


@st.composite
def frame_sets(draw: Any) -> list[bytes]:
    """Frames a peer could send: garbage, a real message perhaps damaged, or a packed header
    (valid-looking or not) with array frames."""
    kind = draw(st.sampled_from(["garbage", "real", "forged"]))
    if kind == "garbage":
        return draw(st.lists(st.binary(max_size=64), max_size=5))
    if kind == "real":
        return draw(real_messages())
    header = msgpack.packb(draw(headers()), use_bin_type=True)
    arrays = draw(st.lists(st.binary(max_size=300), max_size=3))
    return [draw(st.sampled_from([b"/camera/image", b"/x", b"\xff\xfe"])), header, *arrays]


@FUZZ
@given(frame_sets(), st.sampled_from([None, msgs.Image, msgs.Detections, msgs.String, msgs.NodeStats]))
def test_wire_decode_takes_a_message_or_raises_its_documented_error(frames, expected):
    try:
        received = wire.decode(frames, expected)
    except MalformedMessage:
        OUTCOMES["wire.decode rejected (MalformedMessage)"] += 1
        return
    assert isinstance(received, wire.Received)
    OUTCOMES["wire.decode taken"] += 1
    try:
        wire.peek_sequence(frames)
    except MalformedMessage:
        pytest.fail("decode took a message whose sequence peek rejects")


def test_wire_decode_takes_real_messages_too():
    """The fuzzer's counterpart: real frames of every registered type decode (so a decoder that
    rejected everything could not pass the test above)."""
    image = msgs.Image(header=msgs.Header(seq=3), data=np.zeros((4, 4, 3), np.uint8))
    assert wire.decode(wire.encode(b"/x", image), msgs.Image).msg.header.seq == 3


# -- the registry protocol ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry():
    registry = Registry(f"tcp://127.0.0.1:{free_port()}", keys=False, expiry_s=3600.0)
    yield registry
    registry._router.close()  # never served: its sockets only
    registry._events.close()


endpoints = st.builds("tcp://127.0.0.1:{}".format, st.integers(1, 65535)) | st.text(min_size=1, max_size=8)
good_registrations = st.fixed_dictionaries(
    {
        "uid": st.text(min_size=1, max_size=6),
        "name": st.sampled_from(["/a", "/b/c", "/_tool"]),
        "pid": st.integers(0, 99),
        "host": st.just("h"),
        "publishers": st.lists(
            st.fixed_dictionaries(
                {
                    "topic": st.sampled_from(["/x", "/y"]),
                    "type": st.just("percept/String"),
                    "endpoint": endpoints,
                }
            ),
            max_size=2,
        ),
        "subscriptions": st.lists(
            st.fixed_dictionaries({"topic": st.sampled_from(["/x", "/y"]), "type": st.just("*")}), max_size=2
        ),
        "services": st.lists(
            st.fixed_dictionaries(
                {
                    "name": st.sampled_from(["/a/s", "/b"]),
                    "endpoint": endpoints,
                    "request": st.just("percept/Trigger"),
                    "response": st.just("percept/Result"),
                }
            ),
            max_size=2,
        ),
    }
)
registrations = good_registrations | st.fixed_dictionaries(
    {},
    optional={
        "uid": st.text(max_size=6) | scalars,
        "name": st.sampled_from(["/a", "/b/c", "/_tool"]) | st.text(max_size=8) | scalars,
        "pid": scalars,
        "host": scalars,
        "publishers": st.lists(
            st.dictionaries(
                st.sampled_from(["topic", "endpoint", "type", "local"]), scalars | st.text(max_size=10)
            ),
            max_size=3,
        )
        | values,
        "subscriptions": st.lists(st.dictionaries(st.sampled_from(["topic", "type"]), scalars), max_size=3)
        | values,
        "services": st.lists(st.dictionaries(st.sampled_from(["name", "endpoint"]), scalars), max_size=2)
        | values,
    },
)
requests = st.one_of(
    st.binary(max_size=80),
    st.builds(
        lambda op, rid, node, extra: msgpack.packb({"op": op, "id": rid, "node": node, **extra}),
        st.sampled_from(["sync", "bye", "graph", "service", "nope"]) | scalars,
        st.integers(0, 9) | scalars,
        registrations | values,
        st.dictionaries(
            st.sampled_from(["uid", "name"]), st.sampled_from(["/a/s", "/b", "x"]) | scalars, max_size=2
        ),
    ),
    st.builds(msgpack.packb, values),
)


@FUZZ
@given(requests)
def test_the_registry_answers_every_request_and_keeps_working(registry, payload):
    reply = registry._handle(payload, None)
    assert isinstance(reply, dict) and isinstance(reply.get("ok"), bool) and "id" in reply
    msgpack.packb(reply)  # the answer can always be sent
    OUTCOMES[f"registry {'answered ok' if reply['ok'] else 'refused with an error'}"] += 1
    for node in registry._nodes.values():  # what is kept, every tool can read back whole
        for entry in node.get("publishers", []) + node.get("subscriptions", []):
            assert isinstance(entry["topic"], str) and isinstance(entry["type"], str), node
    good = {
        "uid": "fuzz-check",
        "name": "/fuzz_check",
        "pid": 1,
        "host": "h",
        "publishers": [],
        "subscriptions": [],
    }
    assert registry._handle(msgpack.packb({"op": "sync", "id": 1, "node": good}), None)["ok"]


# -- parameter services ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def params_node():
    from nodes import Params

    harness = NodeHarness(Params)
    yield harness.node
    harness.close()


parameter_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["rate", "count", "label", "enabled", "size", "nope"]) | st.text(max_size=5),
        parameter_values,
        max_size=4,
    )
)
def test_set_parameters_answers_every_request_and_keeps_types_and_ranges(params_node, values):
    try:
        request = wire.decode(
            wire.encode(b"/params/set_parameters", SetParameters(values=values)), SetParameters
        ).msg
    except (MalformedMessage, Exception) as exc:  # a value msgpack cannot carry never reaches the node
        OUTCOMES["set_parameters unencodable"] += 1
        assert isinstance(exc, (MalformedMessage, msgs.MessageError, TypeError, ValueError, OverflowError))
        return
    result = params_node._set_parameters(request)
    assert isinstance(result, Result)
    OUTCOMES[f"set_parameters {'taken' if result.success else 'refused'}"] += 1
    rate = params_node.get_parameter("rate")
    assert type(rate) is float and 0.1 <= rate <= 1000.0 and not math.isnan(rate)
    assert type(params_node.get_parameter("count")) is int and type(params_node.get_parameter("label")) is str
    assert (
        type(params_node.get_parameter("enabled")) is bool and type(params_node.get_parameter("size")) is list
    )


# -- launch files ------------------------------------------------------------------------------------

keys = st.sampled_from(
    [*launch_file.TOP_KEYS, *launch_file.NODE_KEYS, "file", "default", "keystore"]
) | st.text(max_size=6)
strings = st.sampled_from(
    ["$(arg rate)", "$(env HOME)", "$(env NOPE x)", "$(arg", "a:B", "/ns", ""]
) | st.text(max_size=12)
yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | strings,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=15,
)
launch_texts = st.one_of(
    st.builds(
        lambda doc: yaml.safe_dump(doc, sort_keys=False), st.dictionaries(keys, yaml_values, max_size=4)
    ),
    st.text(max_size=200),
    st.sampled_from(
        [
            "nodes:\n  - node: a:B\n    name: [",
            "include:\n  - file: self.yaml\n",
            "{{{{",
            "nodes: !!python/object:os.system x",
        ]
    ),
)


@pytest.fixture(scope="module")
def launch_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz-launch")  # module-scoped: Hypothesis runs many examples in one


@FUZZ
@given(launch_texts, st.dictionaries(st.sampled_from(["rate", "x"]), st.integers() | strings, max_size=2))
def test_the_launch_file_parser_loads_or_names_the_mistake(launch_dir, text, arguments):
    path = launch_dir / "self.yaml"  # an include of self.yaml is a cycle
    path.write_text(text)
    try:
        description = launch_file.load(path, arguments)
    except LaunchError as exc:
        assert str(exc)
        OUTCOMES["launch file rejected (LaunchError)"] += 1
        return
    assert isinstance(description, launch_file.LaunchDescription)
    OUTCOMES["launch file loaded"] += 1
