"""The percept CLI, run as a user would, against a live graph."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, free_port, percept, spin_until, wait_for

from perception import Node
from perception.cli import build_parser, main
from perception.msgs import Header, Image


@pytest.fixture
def graph(registry, spawn):
    spawn("-p", "rate:=50.0", node="SeqPublisher")
    spawn(node="Params")
    spawn(node="Services")
    wait = percept("topic", "echo", "/frames", "--once", "--timeout", "20")
    assert wait.returncode == 0, wait.stderr
    # The three started together, but each registers when its own start-up ends.
    wait_for(lambda: len(percept("node", "list").stdout.split()) == 3, what="the three nodes")
    return registry


def test_node_topic_and_service_listings(graph):
    nodes = percept("node", "list").stdout.split()
    assert nodes == ["/params", "/seq_publisher", "/services"]  # hidden CLI nodes are not listed
    topics = percept("topic", "list", "-v").stdout
    assert "/frames [percept/Image]  1 publisher(s), 0 subscription(s)" in topics
    info = percept("node", "info", "seq_publisher").stdout  # the leading slash may be left out
    assert "/frames: percept/Image" in info and "/seq_publisher/get_parameters" in info
    # Its traffic from its stats, as a launch's status table gives it: frames going out, nothing wrong.
    assert re.search(r"Traffic .*\n    >/frames [1-9]\d*\.\d\n", info) and "Problems: none" in info, info
    typo = percept("node", "info", "/seq_publishr")
    assert typo.returncode == 1 and typo.stderr.strip() == (
        "percept: error: no node /seq_publishr in the graph; did you mean /seq_publisher? (percept node list)"
    )
    services = percept("service", "list", "-t").stdout
    assert "/services/ok [percept/Trigger -> percept/Result]" in services


def test_node_info_says_a_subscription_has_no_publisher(graph, spawn):
    """A mistyped remapping (frames:=/frame) listens to nothing, and its rate of 0 looked like a quiet
    publisher, with 'Problems: none'."""
    spawn("-r", "frames:=/frame", "--name", "lonely", node="FrameCounter")
    wait_for(lambda: "/lonely" in percept("node", "list").stdout.split(), what="the lonely counter")
    info = percept("node", "info", "/lonely").stdout
    assert "    /frame: percept/Image  (no publisher; did you mean /frames?)" in info, info
    assert re.search(r"Problems: .*1 subscription with no publisher", info), info


def test_echo_hz_and_bw(graph):
    echo = percept("topic", "echo", "/frames", "--once").stdout
    assert re.search(
        r"header:\n  stamp: \d+  # 20\d\d-\d\d-\d\dT[\d:]+\.\d{9}Z\n  frame_id: 'a'\n  seq: \d+", echo
    )
    assert "data: array(shape=(48, 64, 3), dtype=uint8, [" in echo and echo.rstrip().endswith("---")
    hz = percept("topic", "hz", "/frames", "--duration", "2.5").stdout
    rates = [float(r) for r in re.findall(r"average rate: ([\d.]+)", hz)]
    assert rates and all(40 < r < 60 for r in rates), hz  # the publisher runs at 50 Hz
    bw = percept("topic", "bw", "/frames", "--duration", "2.5").stdout
    assert "Message size mean: 9." in bw  # 48 x 64 x 3 = 9216 bytes plus the header


def test_echo_into_a_reader_that_goes_away_ends_without_a_traceback(graph):
    """`percept topic echo /tracks | head`: once head has its lines, echo ends as any command does when
    its reader goes (exit 141, as a shell's SIGPIPE), where it printed a traceback per message and ran on."""
    echo = subprocess.Popen(
        [sys.executable, "-m", "perception.cli", "topic", "echo", "/frames", "--field", "header.seq"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert echo.stdout is not None and echo.stdout.readline().strip().isdigit()
        echo.stdout.close()  # head has what it wanted
        _, err = echo.communicate(timeout=30)
    finally:
        echo.kill()
    assert echo.returncode == 141 and "Traceback" not in err and "BrokenPipeError" not in err, err


def test_pub_reaches_echo(registry):
    echo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "perception.cli",
            "topic",
            "echo",
            "/chatter",
            "--count",
            "2",
            "--timeout",
            "20",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    pub = percept(
        "topic",
        "pub",
        "/chatter",
        "percept/String",
        "{data: hello}",
        "--times",
        "2",
        "--rate",
        "20",
        "--wait",
        "15",
    )
    assert pub.returncode == 0, pub.stderr
    out, _ = echo.communicate(timeout=30)
    assert out == "data: 'hello'\n---\ndata: 'hello'\n---\n"


def test_pub_names_a_mistyped_field_before_waiting_for_a_subscriber(registry):
    pub = percept("topic", "pub", "/chatter", "percept/String", "{dat: hi}", "--once", "--wait", "20")
    assert pub.returncode == 1 and pub.stdout == ""  # no "no subscriber on /chatter after 20 s" first
    assert (
        pub.stderr == "percept: error: percept/String has no field 'dat'; did you mean data? (fields: data)\n"
    )


def test_param_get_set_list_and_service_call(graph, spawn):
    assert percept("param", "get", "/params", "rate").stdout.strip() == "float value is: 10.0"
    assert percept("param", "set", "/params", "count", "9").stdout.strip() == "Set parameter successful"
    assert "count: 9 (int)  # an int" in percept("param", "list", "/params").stdout
    bad = percept("param", "set", "/params", "count", "nine")
    assert bad.returncode == 1
    assert bad.stderr.strip() == (
        "percept: error: setting count on /params failed: parameter '/params.count': "
        "expected int, found str 'nine'"
    )
    every = percept("param", "list").stdout  # no node: every node's, as `ros2 param list`
    assert "/params:\n  count: 9 (int)  # an int\n" in every and "/services:\n  delay: 1.0 (float)\n" in every
    assert percept("param", "describe", "/params", "rate").stdout == (
        "Parameter name: rate\n  Type: float\n  Value: 10.0\n  Description: a float (0.1 to 1000)\n"
    )
    unknown = percept("param", "get", "/params", "rat")
    assert unknown.returncode == 1 and unknown.stderr == (  # as `param set` says it, without the service
        "percept: error: /params has no parameter 'rat' (declared: rate, count, label, enabled, size, device)\n"
    )
    call = percept("service", "call", "/services/ok")
    assert "response:\n  success: True\n  message: 'ok'" in call.stdout
    assert percept("service", "type", "/services/ok").stdout == "percept/Trigger -> percept/Result\n"
    typo = percept("service", "call", "/services/okk")
    assert typo.returncode == 1 and typo.stderr.strip() == (  # not a list of every service
        "percept: error: no service /services/okk in the graph; did you mean /services/ok or /services/slow? "
        "(percept service list)"
    )
    # A tool's hidden services (the launcher's) are neither listed nor suggested, as `service list` hides them.
    spawn("--name", "_params", node="Params")
    wait_for(lambda: "/_params" in percept("node", "list", "-a").stdout, what="the hidden node")
    hidden = percept("service", "call", "/params/get_parameter")
    assert "did you mean /params/get_parameters" in hidden.stderr and "_params" not in hidden.stderr


def test_topic_info_type_find_and_echo_of_one_field(graph):
    info = percept("topic", "info", "/frames", "-v")
    assert info.returncode == 0, info.stderr
    lines = info.stdout.splitlines()
    assert (
        lines[0] == "Type: percept/Image"
        and "Publisher count: 1" in lines
        and "Subscription count: 0" in lines
    )
    assert re.search(r"  /seq_publisher  \(pid \d+ on .+\)  address tcp://", info.stdout)
    assert percept("topic", "type", "/frames").stdout.strip() == "percept/Image"
    assert percept("topic", "find", "Image").stdout.split() == ["/frames"]
    stamp = percept("topic", "echo", "/frames", "--once", "--field", "header.frame_id").stdout
    assert stamp.splitlines()[0] == "'a'"
    wrong = percept("topic", "echo", "/frames", "--once", "--field", "header.stmp", "--timeout", "20")
    assert wrong.returncode == 1
    assert (
        "--field header.stmp: no field 'stmp'; did you mean stamp? (fields: stamp, frame_id, seq)"
        in wrong.stderr
    )
    value = percept("topic", "echo", "/frames", "--once", "--field", "header.stamp.x", "--timeout", "20")
    assert value.returncode == 1  # it said "no field 'x' (fields: )"
    assert re.fullmatch(
        r"percept: error: --field header.stamp.x: header.stamp is a value \(int \d+\), not a message with "
        r"fields; found 'x'\n",
        value.stderr,
    ), value.stderr
    typo = percept("topic", "info", "/frame")
    assert typo.returncode == 1 and typo.stderr.strip() == (
        "percept: error: no topic /frame in the graph; did you mean /frames? (percept topic list)"
    )


def test_waiting_on_a_topic_nobody_publishes_says_so(graph):
    echo = percept("topic", "echo", "/framez", "--timeout", "3")  # asked to wait: it waits, and says so
    assert echo.returncode == 1
    assert "nobody publishes /framez; did you mean /frames?; waiting" in echo.stderr
    assert "no message on /framez within 3 s" in echo.stderr
    quick = percept("topic", "echo", "/framez")  # not asked to wait: it says why after a second, and exits
    assert quick.returncode == 1 and quick.stderr.strip() == (
        "percept: error: nobody publishes /framez; did you mean /frames?; --wait waits for a publisher"
    )
    hz = percept("topic", "hz", "/framez", "--duration", "2.5")
    assert "nobody publishes /framez" in hz.stdout and "no new messages" not in hz.stdout
    assert hz.returncode == 1 and "no message on /framez within 2.5 s" in hz.stderr
    once = percept("topic", "hz", "/framez")  # said once, as the error, not first on stdout too
    assert once.returncode == 1 and once.stdout == ""
    assert (
        once.stderr
        == "percept: error: nobody publishes /framez; did you mean /frames?; --wait waits for a publisher\n"
    )


def test_param_dump_and_load_and_an_unknown_node(graph, tmp_path):
    dump = percept("param", "dump", "/params")
    assert dump.returncode == 0, dump.stderr
    assert dump.stdout.startswith("/params:\n  parameters:\n") and "    rate: 10.0\n" in dump.stdout
    changed = tmp_path / "params.yaml"
    changed.write_text(dump.stdout.replace("rate: 10.0", "rate: 12.5").replace("label: cam", "label: front"))
    load = percept("param", "load", "/params", str(changed))
    assert load.returncode == 0, load.stderr
    # What the dump holds unchanged, the read-only device among it, is left alone.
    assert load.stdout == (
        "Set 2 parameters on /params: label, rate (4 unchanged: count, device, enabled, size)\n"
    )
    changed.write_text("count: 4\n")
    assert percept("param", "load", "/params", str(changed)).stdout == "Set 1 parameter on /params: count\n"
    changed.write_text("device: /dev/video2\n")
    fixed = percept("param", "load", "/params", str(changed))
    assert fixed.returncode == 1 and "device" in fixed.stderr and "read-only" in fixed.stderr, fixed.stderr
    assert percept("param", "get", "/params", "rate").stdout.strip() == "float value is: 12.5"
    assert percept("param", "get", "/params", "label").stdout.strip() == "str value is: 'front'"
    # A file with one bad value sets none of its values, as its error says ("setting ... failed").
    changed.write_text("label: back\nrate: 20.0\nsize: [320, 240.5]\n")
    bad = percept("param", "load", "/params", str(changed))
    assert bad.returncode == 1 and bad.stderr.strip() == (
        "percept: error: setting label, rate, size on /params failed: parameter '/params.size': "
        "expected a list of int, found float 240.5 at index 1"
    )
    assert percept("param", "get", "/params", "label").stdout.strip() == "str value is: 'front'"
    assert percept("param", "get", "/params", "rate").stdout.strip() == "float value is: 12.5"
    # A ROS 2 file for several nodes: the wildcard section and the node's own, not another node's.
    changed.write_text(
        "/**:\n  ros__parameters: {label: all, use_sim_time: true}\nother:\n  ros__parameters: {rate: 1.0}\n"
    )
    shared = percept("param", "load", "/params", str(changed))
    assert shared.returncode == 0 and shared.stdout == (  # what /** gives every node, where it has no such
        "Set 1 parameter on /params: label (left out, from a section for every node, which /params does "
        "not declare: use_sim_time)\n"
    )
    assert percept("param", "get", "/params", "label").stdout.strip() == "str value is: 'all'"
    assert percept("param", "get", "/params", "rate").stdout.strip() == "float value is: 12.5"
    unknown = percept("param", "list", "/parms")
    assert unknown.returncode == 1 and unknown.stderr.strip() == (
        "percept: error: no node /parms in the graph; did you mean /params? (percept node list)"
    )


def test_interfaces_launch_arguments_and_mistyped_verbs():
    listing = percept("interface", "list").stdout
    assert "percept/Detections" in listing and "percept/Image" in listing
    show = percept("interface", "show", "percept/Detections").stdout
    assert "percept/Header header\n    int stamp  # default 0" in show
    assert "\narray<f4>[N,4] xyxy  # default empty" in show  # dtype and shape, as a foreign client needs
    grasps = percept("interface", "show", "Grasps").stdout
    assert grasps.startswith("# percept/Grasps (schema v3, reads v1, v2)\n# Parallel-jaw grasps")
    assert "version 3 the pushes." in grasps  # the whole description, not its first line
    table = percept("interface", "list", "--markdown").stdout
    assert "| `percept/Grasps` v3 (reads v1, v2) | `header` (req) | `percept/Header` map |  |" in table
    typo = percept("interface", "show", "Detectoins")
    assert typo.returncode == 1 and "did you mean Detections" in typo.stderr
    arguments = percept("launch", "sim_detect", "--show-args").stdout
    assert (
        "  model            default 'models/percept.onnx'  # an ONNX detector (ours, YOLOv5/v8/11, YOLOX)"
        in arguments
    )
    verb = percept("topik", "list")
    assert verb.returncode == 2 and verb.stderr.strip().endswith("did you mean topic?")
    sub = percept("topic", "ecko", "/frames")
    assert sub.returncode == 2 and sub.stderr.strip().endswith("did you mean echo?")


def test_echo_shows_stamps_as_time_and_two_dimensional_arrays_as_rows():
    from perception.cli.common import format_value
    from perception.msgs import Detections

    boxes = Detections(
        Header(stamp=1_764_800_000_123_456_789, frame_id="cam"),
        np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]], np.float32),
        np.array([0.9, 0.8], np.float32),
        np.array([1, 2], np.int32),
        ["mug", "duck"],
    )
    text = format_value(boxes, full=True)
    assert "stamp: 1764800000123456789  # 2025-12-03T22:13:20.123456789Z" in text
    assert "xyxy:\n  # shape (2, 4), float32\n  - [1.0, 2.0, 3.0, 4.0]\n  - [5.0, 6.0, 7.0, 8.0]" in text
    assert "stamp: 5000000000  # 5.000000000 s (sim time)" in format_value(Header(stamp=5_000_000_000))


def test_echo_shows_fields_not_class_constants():
    from perception.cli.common import format_value
    from perception.msgs import Image

    text = format_value(Image(Header(stamp=1), np.zeros((2, 2, 3), np.uint8)))
    assert text.startswith("header:") and "MAX_BYTES" not in text and "TYPE_NAME" not in text


def test_topic_pub_values_are_checked_against_the_fields_they_fill():
    """As `percept topic pub` and `percept service call` build messages from YAML: short type names,
    a mistyped field or type suggested, a value of the wrong kind named with its field."""
    from perception.cli.topic import build_message
    from perception.errors import PerceptError

    assert build_message("String", {"data": "hi"}).data == "hi"
    mask = build_message("Image", {"encoding": "mono8", "data": [[0, 255], [7, 8]]}).data  # YAML's ints
    assert mask.dtype == np.uint8 and mask.tolist() == [[0, 255], [7, 8]]
    pose = build_message("PoseStamped", {"pose": {"position": [1, 2, 3]}})
    assert pose.pose.position == (1.0, 2.0, 3.0) and pose.header.stamp > 0
    assert (
        build_message("CameraInfo", {"width": 4, "height": 3, "K": [[1, 0, 2], [0, 1, 1.5], [0, 0, 1]]}).K[
            0, 2
        ]
        == 2
    )
    for type_name, values, message in (
        ("Strng", {}, "no message type 'Strng'; did you mean String?"),
        ("String", {"dat": "hi"}, "percept/String has no field 'dat'; did you mean data? (fields: data)"),
        ("Trigger", {"x": 1}, "percept/Trigger has no fields, so takes no values; found 'x'"),  # "(fields: )"
        ("String", {"data": 5}, 'percept/String.data: expected text (in quotes: "5"), found int 5'),
        ("Pose", {"position": "abc"}, "percept/Pose.position: expected a list of 3 numbers, found str 'abc'"),
        (
            "Pose",
            {"position": [1, 2]},
            "percept/Pose.position: expected a list of 3 numbers, found list [1, 2]",
        ),
        (
            "PoseStamped",
            {"pose": 3},
            "percept/PoseStamped.pose: expected a map of percept/Pose fields, found int 3",
        ),
        ("CameraInfo", {"width": 1.5}, "percept/CameraInfo.width: expected an integer, found float 1.5"),
        ("CameraInfo", {"K": [["a"]]}, "percept/CameraInfo.K: expected numbers (a list, or a list of lists)"),
    ):
        with pytest.raises(PerceptError) as error:
            build_message(type_name, values)
        assert str(error.value).startswith(message), str(error.value)


def test_a_node_script_run_by_hand_ends_a_bad_parameter_in_one_line():
    script = ROOT / "examples" / "threshold.py"
    result = subprocess.run(
        [sys.executable, str(script), "-p", "level:=abc"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr == (
        "threshold.py: error: Threshold did not start: parameter '/threshold.level': expected int, "
        "found str 'abc'\n"
    )


def test_a_users_node_that_fails_to_start_is_one_line_with_its_file_and_line(tmp_path, registry):
    node = tmp_path / "mine.py"
    node.write_text(
        "from perception import Node\n\n\nclass Mine(Node):\n    def __init__(self):\n"
        "        super().__init__('mine')\n        raise ValueError('no sensor')\n"
    )
    result = percept("run", f"{node}:Mine")
    assert result.returncode == 1 and result.stderr == (
        "percept: error: Mine did not start: no sensor (ValueError at mine.py:7; --log-level debug for "
        "the traceback)\n"
    )
    # It had registered (Node.__init__ ran) and says goodbye: not kept 3 s, then reported gone silent.
    assert "/mine" not in percept("node", "list", "-a").stdout


def test_errors_are_one_line_without_a_traceback(monkeypatch):
    monkeypatch.setenv("PERCEPT_REGISTRY", f"tcp://127.0.0.1:{free_port()}")
    result = percept("node", "list")
    assert result.returncode == 1
    assert result.stderr.startswith("percept: error: the registry at tcp://127.0.0.1:")
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    missing = percept("run", "no_such_module:Node")
    assert missing.returncode == 1
    assert "cannot import 'no_such_module'" in missing.stderr


@pytest.mark.parametrize("size", ["600x800", "480xwide", "0", "480x640x3"])
def test_train_refuses_an_input_size_the_network_cannot_take(size, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["train", "--steps", "0", "--out", "x.onnx", "--input-size", size])
    assert exit_info.value.code == 2
    assert f"{size}: expected H or HxW in pixels, each a multiple of 32" in capsys.readouterr().err


def test_train_reads_an_input_size_as_height_by_width():
    args = build_parser().parse_args(["train", "--steps", "0", "--out", "x.onnx", "--input-size", "608x800"])
    assert args.input_size == (608, 800) and args.data == []


def _verbs(parser, prefix=()):
    """Every command and subcommand: (words, its parser)."""
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from _verbs(sub, (*prefix, name))


def test_every_command_has_help_that_states_every_default(capsys):
    parsers = dict(_verbs(build_parser()))
    assert ("topic", "echo") in parsers and ("bench", "bus") in parsers and ("param", "set") in parsers
    for command, parser in parsers.items():
        with pytest.raises(SystemExit) as exit_info:
            main([*command, "--help"])
        assert exit_info.value.code == 0
        assert "usage: percept" in capsys.readouterr().out
        for action in parser._actions:  # an option, or a positional that may be left out, with a default
            # argparse shows no line at all for an option without help, whatever its default
            if action.option_strings or action.nargs in ("?", "*"):
                assert action.help, (command, action.option_strings or action.dest, "has no help text")
            default = action.default
            if default is None or default is False or default == [] or default == argparse.SUPPRESS:
                continue
            if not action.option_strings and action.nargs not in ("?", "*"):
                continue
            shown = parser._get_formatter()._expand_help(action)
            assert "default" in shown, (command, action.option_strings or action.dest, shown)

    # What the auditor found: a default of None that means something, and a level with no choices
    def help_of(*command: str) -> str:
        return " ".join(parsers[command].format_help().split())  # as one line, however it wraps

    assert "(default: until stopped)" in help_of("launch")
    assert "{DEBUG,INFO,WARNING,ERROR,CRITICAL}" in help_of("run")
    assert "(default 0: forever)" in help_of("topic", "pub")
    assert "(default: 10)" in help_of("bench", "grasp") and "(default: coco)" in help_of("dataset", "export")
    from perception.cli.common import RENDERERS
    from sim.world import RENDERERS as SIMULATOR_RENDERERS

    assert RENDERERS == SIMULATOR_RENDERERS  # written out for a command line built without the sim extra


def test_an_unknown_option_gets_the_usage_of_its_subcommand(capsys):
    """ROS 2 habits (`ros2 node list -c`) printed percept's top-level usage, which names no option."""
    for command, usage in (
        (["node", "list", "-c"], "usage: percept node list [-h] [-a]\n"),
        (["bench", "bus", "--nope"], "usage: percept bench bus [-h] "),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(command)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.startswith(usage), err
        prog = " ".join(command[:2])
        assert err.endswith(f"percept {prog}: error: unrecognized arguments: {command[2]}\n"), err
    # `ros2 topic list -t` shows the types; ours always does, and takes the flag
    assert build_parser().parse_args(["topic", "list", "-t"]).show_types


def test_the_readme_node_runs(registry, spawn, context):
    spawn("run", "examples/threshold.py:Threshold", "-p", "level:=100")
    with Node("feeder", context=context) as node:
        masks: list[Image] = []
        node.create_subscription(Image, "/mask", masks.append)
        publisher = node.create_publisher(Image, "/image")
        spin_until(node, lambda: publisher.subscriber_count, what="the threshold node")
        frame = np.zeros((4, 6, 3), np.uint8)
        frame[1:3, 2:5] = 200
        spin_until(
            node, lambda: publisher.publish(Image(header=Header(seq=1), data=frame)) or masks, what="a mask"
        )
        np.testing.assert_array_equal(masks[0].data, (frame[..., 0] > 100).astype(np.uint8) * 255)
        assert masks[0].header.seq == 1 and masks[0].encoding == "mono8"
        # The README's node reads its parameter per frame, so a live change takes effect.
        from perception.msgs import Result, SetParameters

        setter = node.create_client("/threshold/set_parameters", SetParameters, Result)
        assert setter.call(SetParameters(values={"level": 250}), timeout_s=10).success

        def after() -> list[Image]:  # masks of the earlier frames may still come
            return [m for m in masks if m.header.seq == 2]

        spin_until(
            node, lambda: publisher.publish(Image(header=Header(seq=2), data=frame)) or after(), what="a mask"
        )
        assert not after()[0].data.any()  # 200 is no longer above the level


def test_a_remapping_that_matches_no_name_is_told_and_ros_spellings_of_name_and_namespace_work(
    registry, spawn
):
    """A typo in a remapping's source leaves a topic unconnected: said, as a mistyped parameter is."""
    from conftest import read_until

    process = spawn(  # `--ros-args` before them, as `ros2 run` has it, is taken and means nothing
        "run", "examples/threshold.py:Threshold", "--ros-args", "-r", "imag:=/camera/image",
        "-r", "__node:=thresh", "-r", "__ns:=/arm",
    )  # fmt: skip
    output = read_until(process, "matches no name", timeout_s=30)
    assert (
        "[/arm/thresh] remapping imag:=/camera/image matches no name this node uses (its names: /arm/image, "
        "/arm/mask)" in output
    ), output


def test_a_mistyped_class_of_a_node_file_is_named_with_the_classes_it_has():
    typo = percept("run", "examples/threshold.py:Treshold")
    assert typo.returncode == 1 and typo.stderr.strip() == (
        "percept: error: node 'examples/threshold.py:Treshold': examples/threshold.py has no Node subclass "
        "named 'Treshold'; did you mean Threshold? (Node subclasses here: Threshold)"
    )


def test_percept_run_takes_its_nodes_section_of_a_ros2_parameter_file(registry, spawn, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("threshold:\n  ros__parameters: {level: 200}\nother:\n  ros__parameters: {level: 3}\n")
    spawn("run", "examples/threshold.py:Threshold", "--params-file", str(params))
    answers: list[str] = []
    wait_for(
        lambda: answers.append(percept("param", "get", "/threshold", "level").stdout) or answers[-1],
        timeout_s=30,
        what="the threshold node's parameters",
    )
    assert answers[-1].strip().endswith("200"), answers[-1]


def test_bench_bus_json_contract():
    result = percept(
        "bench", "bus", "--payloads", "200B,640x480x3", "--count-1khz", "40", "--count-30hz", "4",
        "--seconds", "0.3", "--json",
        timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    rows = report["results"]
    sides = [
        "shm",
        "shm-loan",
        "tcp",
        "tcp-curve",
        "zmq",
        *(["iceoryx2"] if "iceoryx2" in report["settings"]["sides"] else []),
    ]
    assert [(r["payload"], r["side"]) for r in rows] == [(p, s) for p in ("200B", "640x480x3") for s in sides]
    for row in rows:
        for key in ("p50_us_1khz", "p99_us_1khz", "p50_us_30hz", "frames_per_s"):
            assert row[key] > 0, (row["side"], key)
        assert row["sent"]["1kHz"] == 40 and row["sent"]["30Hz"] == 4
        assert 0 <= row["lost_30hz"] <= 4
    assert "tcp / raw pyzmq" in result.stdout and "tcp-curve / tcp" in result.stdout


def test_the_demo_camera_follows_a_live_rate_change(registry, spawn):
    spawn(
        "run",
        "perception.nodes.test_camera:TestCamera",
        "--name",
        "camera",
        "-p",
        "rate:=50.0",
        "-p",
        "width:=64",
        "-p",
        "height:=48",
    )
    assert percept("topic", "echo", "/image", "--once", "--timeout", "20").returncode == 0

    def rates() -> list[float]:
        out = percept("topic", "hz", "/image", "--duration", "2.5").stdout
        return [float(r) for r in re.findall(r"average rate: ([\d.]+)", out)]

    assert all(40 < r < 60 for r in rates())
    assert percept("param", "set", "/camera", "rate", "10").returncode == 0
    assert all(8 < r < 12 for r in rates()[1:])  # the first window may still span the change
    refused = percept("param", "set", "/camera", "width", "320")
    assert "width is fixed once the camera runs" in refused.stderr
    assert percept("param", "get", "/camera", "width").stdout.strip() == "int value is: 64"


def test_bad_yaml_and_bad_rates_on_the_command_line_get_one_line_errors():
    cases = (
        (
            ("topic", "pub", "/t", "percept/String", "{data: [1"),
            "message '{data: [1': not valid YAML at column",
        ),
        (
            ("topic", "pub", "/t", "percept/String", "{data: a}", "--rate", "0"),
            "--rate: expected a number above 0",
        ),
        (("topic", "hz", "/t", "--window", "1"), "--window: expected at least 2 messages"),
        (("param", "set", "/n", "x", "[1"), "value '[1': not valid YAML"),
        (("view", "--fps", "0"), "--fps: expected a number above 0"),
        (("view", "--fps", "60"), "--fps: expected at most 30 frames/s"),
        (("view", "--port", "99999"), "--port: expected a port from 0 to 65535, found 99999"),  # a traceback
        (("play", "x.mcap", "--rate", "-2"), "--rate: expected a number above 0"),
    )
    for args, message in cases:
        result = percept(*args)
        assert result.returncode in (1, 2), (args, result.stderr)  # 2: argparse's own usage errors
        assert message in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)


def test_commands_refuse_counts_rates_scores_seeds_and_durations_out_of_range_before_any_work():
    for args, message in (
        (("bench", "bus", "--rounds", "0"), "argument --rounds: expected a whole number above 0, found 0"),
        (("bench", "graph", "--rates", "10,0"), "argument --rates: expected a number above 0, found 0"),
        (("bench", "record", "--seconds", "-1"), "argument --seconds: expected a number above 0, found -1"),
        (
            ("bench", "track", "--truth", "--jitter", "-1"),
            "argument --jitter: expected a number of 0 or more",
        ),
        (
            ("bench", "detect", "--model", "m.onnx", "--map-confidence", "1.5"),
            "--map-confidence: expected a score",
        ),
        (("bench", "view", "--fps", "60"), "--fps: expected at most 30 frames/s"),
        (  # it ran, and said so in a cut-off table cell, with exit code 0
            ("bench", "detect", "--model", "nofile.onnx", "--frames", "2"),
            "--model nofile.onnx: no such file (a path, or the name of a model that ships: percept-int8.onnx",
        ),
        (("ros2", "topics", "--wait", "-1"), "argument --wait: expected a number of 0 or more, found -1"),
        (  # numpy's generator raised ValueError from a worker: a traceback
            ("bench", "detect", "--scene", "driving", "--frames", "2", "--seed", "-1"),
            "argument --seed: expected a whole number of 0 or more, found -1",
        ),
        (("view", "--duration", "-1"), "argument --duration: expected a number above 0"),  # it served on
        # torch raised from inside a training run (a traceback) for each of these
        (("train", "--data", "d", "--out", "m.onnx", "--steps", "1", "--batch", "0"), "--batch: expected"),
        (
            ("train", "--data", "d", "--out", "m.onnx", "--steps", "1", "--threads", "0"),
            "--threads: expected",
        ),
        (
            ("train", "--data", "d", "--out", "m.onnx", "--steps", "1", "--checkpoint-every", "0"),
            "--checkpoint-every: expected a whole number above 0",
        ),
        (
            ("train", "--data", "d", "--out", "m.onnx", "--steps", "1", "--lr", "-1"),
            "--lr: expected a number",
        ),
        (("launch", "demo", "--stop-timeout", "-1"), "--stop-timeout: expected a number of 0 or more"),
        # after the whole run, a FileNotFoundError from the report; and a split read as part of the path
        (("bench", "detect", "--frames", "2", "--out", "/proc/report"), "--out /proc/report: cannot make"),
        (
            ("bench", "detect", "--data", "tests:value"),
            "--data tests:value: split 'value': expected one of train, val, test, all",
        ),
        # FileNotFoundError tracebacks, --plot's after the whole soak
        (
            ("soak", "test_camera", "--plot", "no-such-folder/p.png"),
            "--plot: no folder no-such-folder to write",
        ),
        (("faults", "burst", "--log", "tests"), "--log: expected a file, found the folder tests"),
        (
            ("bench", "track", "--write-mot", "README.md/mot"),
            "--write-mot: expected a folder, found the file",
        ),
    ):
        result = percept(*args)
        assert result.returncode in (1, 2), (args, result.stderr)  # 2: argparse's own usage errors
        assert message in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)


def test_a_node_that_ships_runs_by_its_modules_name_and_a_typo_gets_the_names():
    """As `ros2 run` finds a package's executables: `percept run test_camera` (and `node: test_camera` in
    a launch file) ran nothing before, "No module named 'test_camera'"."""
    from perception.cli.launch import node_target

    # (test_camera itself is a test module's name in this process: a module found comes first)
    assert node_target("rate_monitor") == "perception.nodes.rate_monitor"
    assert node_target("perception.nodes.tracker:TrackerNode") == "perception.nodes.tracker:TrackerNode"
    assert node_target("json") == "json", "a module that is found comes first"
    result = percept("run", "test_camra")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "node 'test_camra': no module of that name, nor a node that ships (camera," in result.stderr
    assert "did you mean test_camera" in result.stderr


def _readme_commands() -> list[str]:
    """Every `percept ...` command in the README's shell blocks, a continued line joined, one per step
    of a `&&`, `;`, `|` or `&` chain (environment assignments before it dropped)."""
    text = (ROOT / "README.md").read_text()
    blocks = [body for lang, body in re.findall(r"```(\w*)\n(.*?)```", text, re.S) if lang in ("", "bash")]
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            for step in re.split(r"\s*(?:&&|;|\||&)\s*", re.sub(r"\s#.*$", "", line.strip())):
                step = re.sub(r"^(?:[A-Z_]+=\S+\s+)+", "", step.strip())
                if re.match(r"(\S*/)?percept ", step):
                    commands.append(step[step.index("percept ") :])
    return commands


def test_every_command_in_the_readme_parses():
    """The README is the user's guide: an option renamed or dropped would leave its examples failing."""
    commands = _readme_commands()
    assert len(commands) >= 30, commands
    parser = build_parser()
    for command in commands:
        if "..." in command:  # an elided example
            continue
        words = shlex.split(command.replace("$", "X"))  # a shell variable stands for some word
        try:
            parser.parse_args(words[1:])
        except SystemExit as exit_:
            assert not exit_.code, f"README: {command!r} does not parse"
