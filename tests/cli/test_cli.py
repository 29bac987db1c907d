"""The percept CLI, run as a user would, against a live graph."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, free_port, percept, spin_until

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
    return registry


def test_node_topic_and_service_listings(graph):
    nodes = percept("node", "list").stdout.split()
    assert nodes == ["/params", "/seq_publisher", "/services"]  # hidden CLI nodes are not listed
    topics = percept("topic", "list", "-v").stdout
    assert "/frames [percept/Image]  1 publisher(s), 0 subscription(s)" in topics
    info = percept("node", "info", "/seq_publisher").stdout
    assert "/frames: percept/Image" in info and "/seq_publisher/get_parameters" in info
    services = percept("service", "list", "-t").stdout
    assert "/services/ok [percept/Trigger -> percept/Result]" in services


def test_echo_hz_and_bw(graph):
    echo = percept("topic", "echo", "/frames", "--once").stdout
    assert re.search(r"header:\n  stamp: \d+\n  frame_id: 'a'\n  seq: \d+", echo)
    assert "data: array(shape=(48, 64, 3), dtype=uint8, [" in echo and echo.rstrip().endswith("---")
    hz = percept("topic", "hz", "/frames", "--duration", "2.5").stdout
    rates = [float(r) for r in re.findall(r"average rate: ([\d.]+)", hz)]
    assert rates and all(40 < r < 60 for r in rates), hz  # the publisher runs at 50 Hz
    bw = percept("topic", "bw", "/frames", "--duration", "2.5").stdout
    assert "Message size mean: 9." in bw  # 48 x 64 x 3 = 9216 bytes plus the header


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


def test_param_get_set_list_and_service_call(graph):
    assert percept("param", "get", "/params", "rate").stdout.strip() == "float value is: 10.0"
    assert percept("param", "set", "/params", "count", "9").stdout.strip() == "Set parameter successful"
    assert "count: 9 (int)  # an int" in percept("param", "list", "/params").stdout
    bad = percept("param", "set", "/params", "count", "nine")
    assert bad.returncode == 1
    assert bad.stderr.strip() == (
        "percept: error: setting count on /params failed: parameter '/params.count': "
        "expected int, found str 'nine'"
    )
    call = percept("service", "call", "/services/ok")
    assert "response:\n  success: True\n  message: 'ok'" in call.stdout


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
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _verbs(sub, (*prefix, name))


def test_every_command_has_help(capsys):
    commands = list(_verbs(build_parser()))
    assert ("topic", "echo") in commands and ("bench", "bus") in commands and ("param", "set") in commands
    for command in commands:
        with pytest.raises(SystemExit) as exit_info:
            main([*command, "--help"])
        assert exit_info.value.code == 0
        assert "usage: percept" in capsys.readouterr().out


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


def test_bench_bus_json_contract():
    result = percept(
        "bench",
        "bus",
        "--payloads",
        "200B",
        "--rounds",
        "1",
        "--count",
        "40",
        "--seconds",
        "0.3",
        "--json",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    (row,) = report["results"]
    assert row["payload"] == "200B"
    for key in ("p50_us", "p99_us", "fps", "raw_p50_us", "raw_p99_us", "raw_fps"):
        assert row[key] > 0, key
    assert "ours / raw pyzmq" in result.stdout


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
        (("play", "x.mcap", "--rate", "-2"), "--rate: expected a number above 0"),
    )
    for args, message in cases:
        result = percept(*args)
        assert result.returncode in (1, 2), (args, result.stderr)  # 2: argparse's own usage errors
        assert message in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)


def test_benchmarks_refuse_counts_rates_and_scores_out_of_range_before_any_work():
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
    ):
        result = percept(*args)
        assert result.returncode in (1, 2), (args, result.stderr)  # 2: argparse's own usage errors
        assert message in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
