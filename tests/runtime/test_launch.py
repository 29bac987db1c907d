"""Launch files and the launcher: arguments, errors with file and line, respawn, required, no orphans."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import ROOT, TESTS, free_port, percept, read_until, spin_until, wait_for

from perception import Node, installed
from perception.errors import LaunchError
from perception.msgs import Image
from perception.runtime import launch_file
from perception.runtime.launcher import die_with_this_process
from perception.runtime.stopping import StopFlag, stop_signals_call

NODES = f"{TESTS / 'nodes.py'}"


def write(tmp_path: Path, text: str, name: str = "graph.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_arguments_substitution_and_includes(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMERA_FRAME", "wrist")
    write(
        tmp_path,
        """
        arguments: {rate: 5}
        nodes:
          - name: counter
            node: x:Y
            parameters: {rate: $(arg rate)}
        """,
        "child.yaml",
    )
    path = write(
        tmp_path,
        """
        arguments:
          rate: {default: 30.0, description: frames per second}
          ns: /robot
        include:
          - file: child.yaml
            arguments: {rate: $(arg rate)}
        nodes:
          - name: cam
            node: pkg.mod:Camera
            namespace: $(arg ns)
            parameters: {rate: $(arg rate), label: "cam at $(arg rate) Hz", frame: $(env CAMERA_FRAME)}
            remappings: {image: /camera/image}
            respawn: true
            required: false
        """,
    )
    description = launch_file.load(path, {"rate": 12})
    counter, cam = description.nodes
    assert counter.fqn == "/counter" and counter.parameters == {"rate": 12}
    assert cam.fqn == "/robot/cam"
    assert cam.parameters == {"rate": 12, "label": "cam at 12 Hz", "frame": "wrist"}  # whole $(arg) keeps int
    assert cam.remappings == {"image": "/camera/image"} and cam.respawn and not cam.required


@pytest.mark.parametrize(
    ("text", "arguments", "message"),
    [
        # A typo in a key is the commonest mistake: name it, its line, and the keys that are allowed.
        (
            "nodes:\n  - node: a:B\n    paramters: {x: 1}\n",
            {},
            r"graph.yaml:3: nodes\[0\].paramters: unknown key; expected one of name, node",
        ),
        ("nodes:\n  - name: cam\n", {}, r"graph.yaml:2: nodes\[0\]: missing 'node' \(MODULE:CLASS"),
        (
            "nodes:\n  - node: a:B\n    respawn_delay: soon\n",
            {},
            r":3: nodes\[0\].respawn_delay: expected seconds \(a number\), found 'soon'",
        ),
        (
            "nodes:\n  - node: a:B\n    parameters: [1, 2]\n",
            {},
            r":3: nodes\[0\].parameters\[0\]: expected a map of parameter names to values, a parameter file",
        ),
        ("nodes: {node: a:B}\n", {}, r":1: nodes: expected a list, found dict"),
        ("node:\n  - node: a:B\n", {}, r":1: node: unknown key; expected one of arguments, include, nodes"),
        ("nodes:\n  - node: a:B\n    name: 2cams\n", {}, r"invalid node name '/2cams'"),
        (
            "nodes:\n  - node: a:B\n    parameters: {r: $(arg rate)}\n",
            {},
            r"\$\(arg rate\) is not a declared argument",
        ),
        (
            "arguments: {rate: 1}\nnodes: []\n",
            {"rat": 2},
            r"unknown argument 'rat' \(arguments declared: rate\)",
        ),
        (
            "arguments: {source: {default: null}}\n",
            {},
            r"argument 'source' has no default; pass source:=VALUE",
        ),
        (
            "arguments:\n  domain: {default: -1, description: the domain (-1 - $ROS_DOMAIN_ID, else 0)}\n",
            {},
            r"graph.yaml:2: arguments.domain.else 0\): unknown key; expected default and description \(in "
            r"\{...\}, quote a description that has a comma",
        ),
        ("nodes:\n  - node: a:B\n  - node: c:B\n", {}, r"node /b is already defined at .*graph.yaml:2"),
        ("nodes:\n  - node: a:B\n    name: [unclosed\n", {}, r"graph.yaml:\d+: not valid YAML"),
        (
            "include:\n  - file: missing.yaml\n",
            {},
            r"graph.yaml:2: include\[0\].file: expected a launch file relative to this one or the name of "
            r"one that ships, found no .*missing.yaml",
        ),
        (
            "nodes:\n  - node: mine.py:Mine\n",
            {},
            r"graph.yaml:2: nodes\[0\].node: expected a Python file relative to this launch file, "
            r"found no .*/mine.py",
        ),
    ],
)
def test_invalid_launch_files_name_file_line_and_key(tmp_path, text, arguments, message):
    path = write(tmp_path, text)
    with pytest.raises(LaunchError, match=message):
        launch_file.load(path, arguments)


def test_a_node_file_is_found_beside_its_launch_file_and_a_shipped_file_is_included_by_name(
    tmp_path, monkeypatch
):
    """As an include is: a launch file and the node file beside it work from any directory."""
    folder = tmp_path / "robot"
    folder.mkdir()
    (folder / "mine.py").write_text("")
    path = write(folder, "include:\n  - file: test_camera\nnodes:\n  - node: mine.py:Mine\n")
    monkeypatch.chdir(tmp_path)
    spec = launch_file.load(path)
    assert [n.name for n in spec.nodes] == ["camera", "monitor", "mine"]
    assert spec.nodes[-1].target == f"{folder.resolve() / 'mine.py'}:Mine"


def test_parameters_from_a_ros2_parameter_file_relative_to_the_launch_file(tmp_path):
    """As a ROS 2 launch takes them: the wildcard section, then the node's own, then what follows."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "params.yaml").write_text(
        "/**:\n  ros__parameters: {rate: 5.0, width: 320}\n"
        "/arm/camera:\n  ros__parameters: {width: 640}\n"
        "monitor:\n  ros__parameters: {rate: 1.0}\n"
    )
    path = write(
        tmp_path,
        f"""
        nodes:
          - name: camera
            namespace: /arm
            node: {NODES}:SeqPublisher
            parameters: [config/params.yaml, {{height: 480}}]
          - name: other
            node: {NODES}:SeqPublisher
            parameters: config/params.yaml
        """,
    )
    camera, other = launch_file.load(path).nodes
    assert camera.parameters == {"rate": 5.0, "width": 640, "height": 480}
    assert other.parameters == {"rate": 5.0, "width": 320}
    # What only the wildcard gives is every node's, and no node's typo where it does not declare it.
    assert camera.shared_parameters == {"rate"} and other.shared_parameters == {"rate", "width"}
    import argparse

    from perception.runtime.launcher import node_command
    from perception.runtime.runner import add_override_arguments, overrides_from

    command = node_command(other)  # the node process learns which, to leave them unwarned
    assert command[command.index("--shared-parameters") + 1] == "rate,width"
    parser = argparse.ArgumentParser()
    add_override_arguments(parser)
    overrides = overrides_from(parser.parse_args([*command[command.index("--name") :], "-p", "width:=100"]))
    assert overrides.shared_parameters == {"rate"}  # named with -p: the user's own, checked
    (tmp_path / "config" / "broken.yaml").write_text("a: [unclosed\n")
    path.write_text(f"nodes:\n  - node: {NODES}:SeqPublisher\n    parameters: [config/broken.yaml]\n")
    with pytest.raises(
        LaunchError,
        match=r"graph.yaml:3: nodes\[0\].parameters\[0\]: parameter file .*broken.yaml: not valid YAML",
    ):
        launch_file.load(path)


def test_one_file_included_twice_under_two_namespaces(tmp_path):
    """Two robots from one file, as ROS 2's PushRosNamespace: each node's namespace goes under the
    include's, its own included (a parameter file's sections follow the final names)."""
    (tmp_path / "params.yaml").write_text("/left/arm/cam:\n  ros__parameters: {rate: 5.0}\n")
    write(tmp_path, f"nodes:\n  - name: cam\n    namespace: arm\n    node: {NODES}:SeqPublisher\n"
          "    parameters: params.yaml\n", name="robot.yaml")  # fmt: skip
    path = write(
        tmp_path,
        "include:\n  - {file: robot.yaml, namespace: /left}\n  - {file: robot.yaml, namespace: right}\n",
    )
    left, right = launch_file.load(path).nodes
    assert (left.fqn, right.fqn) == ("/left/arm/cam", "/right/arm/cam")
    assert left.parameters == {"rate": 5.0} and right.parameters == {}


@pytest.mark.parametrize("name", sorted(installed.launch_files()))
def test_a_shipped_launch_file_included_under_a_namespace_moves_whole(tmp_path, name):
    """Two robots from a shipped file: its nodes name their topics and services relative to their
    namespace (its remappings and its bridge's topics too), as ROS 2's launch files do, or one robot's
    detector would read the other's camera."""
    path = write(tmp_path, f"include:\n  - {{file: {name}, namespace: /robot2}}\n")
    for node in launch_file.load(path).nodes:
        assert node.fqn.startswith("/robot2/"), node.fqn
        names = [*node.remappings.values(), *(row["ours"] for row in node.parameters.get("topics", []))]
        names += [v for k, v in node.parameters.items() if k.endswith("service") and isinstance(v, str)]
        assert not [n for n in names if n.startswith("/")], f"{name}: {node.name} names {names}"


@pytest.mark.parametrize("name", sorted(installed.launch_files()))
def test_a_shipped_launch_files_arguments_are_whole(name):
    """--show-args showed ros2_detect's domain_id as 'the ROS 2 domain (-1 - $ROS_DOMAIN_ID': an
    unquoted comma in {...} had cut its description, the rest a stray key (now refused)."""
    for argument, _, description in launch_file.declared_arguments(installed.launch_files()[name]):
        assert description.count("(") == description.count(")"), f"{name}: {argument}: {description}"


def test_a_shipped_graph_included_twice_runs_as_two(tmp_path, registry):
    process = _launch(
        tmp_path,
        """
        include:
          - {file: test_camera, namespace: /left, arguments: {rate: 5.0}}
          - {file: test_camera, namespace: /right, arguments: {rate: 5.0}}
        """,
    )
    output = read_until(process, "[/right/monitor] /right/camera/image 480x640x3", 30)
    output += read_until(process, "[/left/monitor] /left/camera/image 480x640x3", 10)
    process.send_signal(signal.SIGINT)
    output += process.communicate(timeout=20)[0]
    assert "[/left/monitor] /left/camera/image 480x640x3" in output, output
    assert "[/right/monitor] /right/camera/image 480x640x3" in output, output


def _launch(tmp_path: Path, text: str, *extra: str) -> subprocess.Popen[str]:
    path = write(tmp_path, text)
    return subprocess.Popen(
        [sys.executable, "-m", "perception.cli", "launch", str(path), "--status-period", "0", *extra],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _stopped_after(process: subprocess.Popen[str], text: str, signum: int, timeout_s: float) -> str:
    """The launch's whole output, stopped with `signum` once `text` has appeared."""
    seen = read_until(process, text, timeout_s=timeout_s)
    process.send_signal(signum)
    rest, _ = process.communicate(timeout=timeout_s)
    return seen + rest


def _children(process: subprocess.Popen[str], count: int) -> list[psutil.Process]:
    """The launcher's node processes (and its registry), once `count` of them run."""
    launcher = psutil.Process(process.pid)
    wait_for(lambda: len(launcher.children(recursive=True)) >= count, timeout_s=20, what=f"{count} children")
    return launcher.children(recursive=True)


def test_respawn_with_backoff_and_a_clean_stop_on_sigterm(tmp_path, registry):
    process = _launch(
        tmp_path,
        f"""
        nodes:
          - name: flaky
            node: {NODES}:ExitsSoon
            parameters: {{after: 0.2}}
            respawn: true
            respawn_delay: 0.2
          - name: steady
            node: {NODES}:Sleeper
        """,
    )
    children = _children(process, 2)
    # It exits at 0.2 s, then restarts after 0.2, 0.4, 0.8 s ...: read until the second delay shows.
    output = _stopped_after(process, "restarting in 0.4 s", signal.SIGTERM, timeout_s=30)
    assert process.returncode == 0, output
    restarts = output.count("/flaky exited with code 3; restarting in")
    assert 2 <= restarts <= 5, output
    assert "restarting in 0.2 s" in output and "restarting in 0.4 s" in output  # the delay doubles
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def test_a_node_that_fails_on_its_own_leaves_the_others_running_and_the_launch_exits_1(tmp_path, registry):
    """Not required and not respawned: the graph goes on without it, but a script must see the failure."""
    process = _launch(
        tmp_path,
        f"""
        nodes:
          - name: flaky
            node: {NODES}:ExitsSoon
          - name: steady
            node: {NODES}:Sleeper
        """,
    )
    # The steady node keeps the launch going: stopped once the other has failed.
    output = _stopped_after(process, "/flaky exited with code 3", signal.SIGINT, timeout_s=60)
    assert "/flaky exited with code 3" in output, output
    assert process.returncode == 1
    assert output.rstrip().endswith("[launch] failed (exit code), not restarted: /flaky (3)"), output


def test_a_required_node_that_dies_stops_everything_and_fails(tmp_path, registry):
    process = _launch(
        tmp_path,
        f"""
        nodes:
          - name: critical
            node: {NODES}:ExitsSoon
            parameters: {{after: 1.0, code: 4}}
            required: true
          - name: bystander
            node: {NODES}:Sleeper
        """,
    )
    children = _children(process, 2)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 1
    assert "required node /critical exited with code 4" in output
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def test_a_required_node_that_finishes_ends_the_launch_cleanly(tmp_path, registry):
    process = _launch(
        tmp_path,
        f"""
        nodes:
          - name: job
            node: {NODES}:ExitsSoon
            parameters: {{after: 1.0, code: 0}}
            required: true
          - name: bystander
            node: {NODES}:Sleeper
        """,
    )
    children = _children(process, 2)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "required node /job finished (exit code 0); stopping the others" in output
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def test_a_node_that_ignores_sigint_and_sigterm_is_killed(tmp_path, registry):
    process = _launch(
        tmp_path,
        f"""
        nodes:
          - name: stubborn
            node: {NODES}:Sleeper
            parameters: {{stubborn: true}}
        """,
        "--stop-timeout",
        "1",
    )
    from conftest import settled_signal

    children = _children(process, 1)
    # The launcher and the stubborn node have both set what SIGINT does before it is sent (the node
    # ignores SIGINT and SIGTERM: the launcher must escalate to SIGKILL).
    for pid in (process.pid, *(c.pid for c in children)):
        wait_for(
            lambda pid=pid: settled_signal(pid, signal.SIGINT), timeout_s=20, what=f"{pid}'s SIGINT setting"
        )
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=30)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def test_a_node_in_a_crash_loop_is_left_stopped_with_its_last_error(tmp_path, registry):
    process = _launch(
        tmp_path,
        f"""
        nodes:
          - name: params
            node: {NODES}:Params
            parameters: {{count: nine}}
            respawn: true
            respawn_delay: 0.1
        """,
    )
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 1, output
    assert output.count("/params exited with code 1; restarting in") == 4, output
    assert (
        "[launch] /params exited with code 1 5 times in a row, each within 10 s of starting: not restarting "
        "it (crash loop); its last words: percept: error: Params did not start: parameter '/params.count': "
        "expected int, found str 'nine'"
    ) in output
    assert "in a crash loop, left stopped: /params" in output


@pytest.mark.parametrize("after_s", [0.3, 0.6, 1.2])
def test_ctrl_c_at_any_moment_of_the_start_prints_no_traceback(tmp_path, monkeypatch, after_s):
    monkeypatch.setenv("PERCEPT_REGISTRY", f"tcp://127.0.0.1:{free_port()}")
    process = _launch(
        tmp_path,
        f"""
        nodes:
          - name: one
            node: {NODES}:Sleeper
          - name: two
            node: {NODES}:Sleeper
        """,
    )
    time.sleep(after_s)  # the launcher and its nodes still importing, or just started
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    # 130 or 0 from the launcher's own handling; -SIGINT when the signal came before Python had set
    # its handler (the interpreter still starting): ended, silently, as Ctrl-C should.
    assert process.returncode in (0, 130, -signal.SIGINT), output


def test_children_die_with_a_killed_launcher(tmp_path, monkeypatch):
    monkeypatch.setenv("PERCEPT_REGISTRY", f"tcp://127.0.0.1:{free_port()}")
    process = _launch(
        tmp_path,
        f"""
        nodes:
          - name: orphan
            node: {NODES}:Sleeper
        """,
    )
    children = _children(process, 2)  # the node and the registry the launcher started
    process.kill()  # no chance to clean up: the parent-death signal must do it
    process.wait(timeout=10)
    # Not communicate(): the children hold the output pipe until they are gone, which is what is tested.
    wait_for(
        lambda: not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE],
        timeout_s=30,
        what="the orphans to exit",
    )
    if process.stdout:
        process.stdout.close()


def test_launch_arguments_on_the_command_line_reach_the_nodes(tmp_path, registry):
    process = _launch(
        tmp_path,
        f"""
        arguments: {{after: 5.0}}
        nodes:
          - name: quick
            node: {NODES}:ExitsSoon
            parameters: {{after: $(arg after), code: 0}}
        """,
        "after:=0.3",
        "--duration",
        "20",
    )
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "/quick exited with code 0" in output and "every node has exited" in output


def test_the_launcher_reports_an_invalid_file_in_one_line(tmp_path):
    path = write(tmp_path, "nodes:\n  - node: a:B\n    respawn: maybe\n")
    result = percept("launch", str(path), timeout=30)
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == f"percept: error: {path}:3: nodes[0].respawn: expected true or false, found 'maybe'"
    )


def test_null_values_and_repeated_keys(tmp_path):
    path = write(tmp_path, "arguments:\n  model: {default: null}\n  rate: ~\nnodes: []\n")
    with pytest.raises(LaunchError, match="argument 'model' has no default; pass model:=VALUE"):
        launch_file.load(path)
    assert launch_file.load(path, {"model": "m.onnx", "rate": 5}).arguments == {"model": "m.onnx", "rate": 5}
    repeated = write(tmp_path, "nodes:\n  - node: a:B\n    name: x\n    name: y\n", "repeated.yaml")
    with pytest.raises(LaunchError, match=r"repeated.yaml:4: duplicate key 'name'"):
        launch_file.load(repeated)


def test_the_status_table_shows_what_went_wrong_in_a_node_and_its_log_is_not_flooded(tmp_path, registry):
    process = _launch(
        tmp_path,
        f"""
        nodes:
          - name: failing
            node: {NODES}:FailingTimer
          - name: publisher
            node: {NODES}:SeqPublisher
            parameters: {{rate: 100.0}}
          - name: slow
            node: {NODES}:FrameCounter
            parameters: {{work_s: 0.05}}
          - name: stuck
            node: {NODES}:Stuck
        """,
        "--status-period",
        "1",
    )
    started = time.monotonic()
    # The stuck node is told once its stats have been missing for 5 s: stop then, however long the
    # nodes took to start on a loaded machine.
    output = _stopped_after(process, ": in a long callback)", signal.SIGINT, timeout_s=60)
    seconds = time.monotonic() - started
    assert process.returncode == 0, output
    rows = [line for line in output.splitlines() if line.startswith("/failing ")]
    assert any(re.search(r"! \d+ timer errors", row) for row in rows), output
    # A subscriber that keeps up with a fifth of what arrives: not a fault, but not hidden either.
    rows = [line for line in output.splitlines() if line.startswith("/slow ")]
    assert any(re.search(r"</frames \d+\.\d \(\d+ dropped by its queue\)", row) for row in rows), output
    # Its process runs, but a callback has not returned for seconds: said beside its rates, not a fault.
    rows = [line for line in output.splitlines() if line.startswith("/stuck ")]
    assert any(re.search(r"running .*\(no stats for \d+ s: in a long callback\)$", row) for row in rows), (
        output
    )
    # About 20 failures a second, at most one traceback a second.
    assert 1 <= output.count("timer callback raised") <= seconds + 1, output


def test_a_node_that_exited_is_shown_without_the_rates_it_had_while_it_ran(tmp_path, registry):
    process = _launch(
        tmp_path,
        f"""
        nodes:
          - name: publisher
            node: {NODES}:SeqPublisher
            parameters: {{rate: 20.0}}
        """,
        "--status-period",
        "1",
    )
    running = read_until(process, ">/frames ", timeout_s=60)
    assert re.search(r"^/publisher +running .*>/frames \d+\.\d", running, re.M), running
    (node,) = _children(process, 1)  # the registry is the fixture's: the one child is the node
    node.send_signal(signal.SIGTERM)  # a node stopped by hand: exit code 0, no respawn
    exited = read_until(process, "/publisher exited with code 0", timeout_s=30)
    output = exited + _stopped_after(process, "\n/publisher ", signal.SIGINT, timeout_s=30)
    after = output.split("/publisher exited with code 0", 1)[1]  # the tables after it
    rows = [line for line in after.splitlines() if line.startswith("/publisher ")]
    assert rows and all(re.fullmatch(r"/publisher +exited +\d+ +0 +", row) for row in rows), output


def _called_again_from_inside(request_stop: Callable[[], None]) -> bool:
    """Call `request_stop` as two signals microseconds apart would: a second time from inside the first
    call, at every line it runs (a signal handler runs between any two lines of the main thread).
    True if it returned; a stop request that takes a lock waits on itself forever."""
    nested = {"active": False}

    def trace(frame: Any, event: str, arg: Any) -> Any:
        if event == "line" and not nested["active"]:
            nested["active"] = True
            try:
                request_stop()
            finally:
                nested["active"] = False
        return trace

    def outer() -> None:
        sys.settrace(trace)
        try:
            request_stop()
        finally:
            sys.settrace(None)

    thread = threading.Thread(target=outer, daemon=True)  # a deadlock must fail the test, not hang it
    thread.start()
    thread.join(timeout=5)
    return not thread.is_alive()


def test_stop_requests_survive_a_second_signal_inside_the_first(context, registry):
    # A killed launcher sends its nodes one parent-death SIGTERM per thread it loses: a node stuck in
    # its handler was left running after its launcher was gone.
    node = Node("stoppable", context=context)
    try:
        assert _called_again_from_inside(node.request_shutdown)
        assert node.shutdown_requested
    finally:
        node.destroy()
    assert _called_again_from_inside(registry.stop)
    flag = StopFlag()
    with stop_signals_call(flag.set):
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        assert _called_again_from_inside(lambda: handler(signal.SIGTERM, None))
    assert flag.is_set()
    assert signal.getsignal(signal.SIGTERM) is not handler  # the handler from before is back


def test_a_child_whose_launcher_died_before_it_armed_exits_at_once(monkeypatch):
    # The launcher can die between a child's fork and its prctl: no parent-death signal comes then.
    real_pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: real_pid + 1)  # "the launcher" is not our process
    arm = die_with_this_process()
    monkeypatch.undo()
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], preexec_fn=arm)
    try:
        assert orphan.wait(timeout=10) == 1
    finally:
        orphan.kill()
    child = subprocess.Popen([sys.executable, "-c", "pass"], preexec_fn=die_with_this_process())
    assert child.wait(timeout=30) == 0  # with its launcher alive it runs as usual


def test_respawn_backoff_counts_quick_exits_in_a_row_not_a_lifetime_of_restarts():
    """Issue 22, item 2: after six well-spaced restarts, two quick crashes gave a 30 s outage."""
    from perception.runtime.launch_file import NodeSpec
    from perception.runtime.launcher import MAX_RESPAWN_DELAY_S, STABLE_AFTER_S, Child, respawn_backoff

    child = Child(NodeSpec(name="detector", target="x:Y", respawn=True, respawn_delay=0.5))
    long_run, quick = STABLE_AFTER_S + 60, 1.0
    for _ in range(6):  # crashes hours apart: each restart waits the shortest delay
        child.restarts += 1
        assert respawn_backoff(child, long_run) == 0.5
    assert [respawn_backoff(child, quick) for _ in range(2)] == [0.5, 1.0]  # not 30 s
    assert [respawn_backoff(child, quick) for _ in range(8)][-1] == MAX_RESPAWN_DELAY_S  # a real crash loop
    assert respawn_backoff(child, long_run) == 0.5  # a good run forgives


def test_a_required_node_that_respawns_comes_back_and_its_subscribers_carry_on(tmp_path, registry, context):
    """Issue 22 (graphs that heal): kill -9 of an upstream node costs a restart, not the run, and the node
    downstream keeps its process and counts the new publisher's frames."""
    from perception.msgs import NodeStats, String
    from perception.runtime.node import STATS_TOPIC

    process = _launch(
        tmp_path,
        f"""
        nodes:
          - name: camera
            node: {NODES}:SeqPublisher
            parameters: {{rate: 50.0}}
            remappings: {{frames: /frames}}
            respawn: true
            respawn_delay: 0.2
            required: true
          - name: counter
            node: {NODES}:FrameCounter
            remappings: {{frames: /frames, count: /count}}
        """,
    )
    try:
        counts: list[int] = []
        node = Node("observer", context=context)
        reported: list[str] = []
        node.create_subscription(String, "/count", lambda m: counts.append(int(m.data)))
        node.create_subscription(NodeStats, STATS_TOPIC, lambda m: reported.append(m.node))
        # Once its stats are out (twice: the launcher has surely read one), the launcher knows it came up
        # (a required node that never did is not respawned).
        spin_until(
            node,
            lambda: reported.count("/camera") >= 2 and counts and counts[-1] > 20,
            timeout_s=30,
            what="frames",
        )
        camera = _pid_of(process, "camera")
        counter = _pid_of(process, "counter")
        os.kill(camera, signal.SIGKILL)
        killed_at, before = time.monotonic(), counts[-1]
        spin_until(
            node, lambda: _pid_of(process, "camera") not in (None, camera), timeout_s=20, what="respawn"
        )
        spin_until(node, lambda: counts[-1] > before + 20, timeout_s=20, what="frames after the respawn")
        assert time.monotonic() - killed_at < 15
        assert process.poll() is None  # the run goes on
        assert _pid_of(process, "counter") == counter  # downstream was not restarted
        node.destroy()
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert "/camera exited with code -9; restarting in 0.2 s" in output, output
    assert process.returncode == 0, output


def test_a_required_node_that_never_comes_up_ends_the_run_even_with_respawn(tmp_path, registry):
    """A bad parameter cannot be fixed by restarting: the run ends at once with the node's error."""
    process = _launch(
        tmp_path,
        f"""
        nodes:
          - name: params
            node: {NODES}:Params
            parameters: {{count: nine}}
            respawn: true
            required: true
        """,
    )
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 1, output
    assert "restarting in" not in output
    assert "required node /params exited with code 1" in output


def _pid_of(process: subprocess.Popen[str], name: str) -> int | None:
    """The pid of the launcher's node process named `name` (its `--name` argument)."""
    for child in psutil.Process(process.pid).children():
        with contextlib.suppress(psutil.Error):
            command = child.cmdline()
            if "--name" in command and command[command.index("--name") + 1] == name:
                return child.pid
    return None


def test_the_launcher_restarts_its_registry_and_a_new_node_joins_within_two_seconds(tmp_path, monkeypatch):
    """Issue 22, item 3: with its registry killed, the launcher starts another at once; a node that
    joins then (a respawned one, or a viewer) finds its publishers within 2 s of the registry's return."""
    from perception.runtime import registry
    from perception.runtime.context import Context

    address = f"tcp://127.0.0.1:{free_port()}"
    monkeypatch.setenv("PERCEPT_REGISTRY", address)  # none there: the launcher starts its own
    process = _launch(
        tmp_path,
        f"""
        nodes:
          - name: camera
            node: {NODES}:SeqPublisher
            parameters: {{rate: 50.0}}
            remappings: {{frames: /frames}}
        """,
    )
    try:
        # Once the camera runs, the launcher has seen its registry answer (it starts nodes after that).
        wait_for(lambda: _pid_of(process, "camera") is not None, timeout_s=20, what="the camera")
        first = _pid_of_registry(process)
        assert first is not None
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: _pid_of_registry(process) not in (None, first), timeout_s=10, what="a new registry")
        wait_for(lambda: registry.is_running(address, timeout_s=0.2), timeout_s=10, what="the new registry")
        back_at = time.monotonic()
        got: list[int] = []
        node = Node("late_viewer", context=Context(registry=address))
        node.create_subscription(Image, "/frames", lambda m: got.append(m.header.seq))
        spin_until(node, lambda: len(got) >= 3, timeout_s=10, what="frames through the new registry")
        joined_s = time.monotonic() - back_at
        node.destroy()
        assert joined_s < 2.0, f"joined {joined_s:.2f} s after the registry came back"
        assert process.poll() is None
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert "[launch] the registry exited with code -9; restarting it in 0.0 s" in output, output
    assert "[launch] restarted the registry at" in output, output


def test_a_launcher_using_another_launchers_registry_starts_one_when_that_launcher_ends(
    tmp_path, monkeypatch
):
    """Two launches on one registry: the second used the first's, and when the first ended (its registry
    with it) new nodes could no longer join the second's graph."""
    from perception.runtime.context import Context

    address = f"tcp://127.0.0.1:{free_port()}"
    monkeypatch.setenv("PERCEPT_REGISTRY", address)
    graph = """
        nodes:
          - name: {name}
            node: {nodes}:SeqPublisher
            parameters: {{rate: 50.0}}
            remappings: {{frames: /{name}}}
        """
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    first = _launch(tmp_path / "first", graph.format(name="front", nodes=NODES))
    try:
        wait_for(lambda: _pid_of(first, "front") is not None, timeout_s=20, what="the first launch's node")
        second = _launch(tmp_path / "second", graph.format(name="rear", nodes=NODES))
        try:
            assert "[launch] using the registry at" in read_until(second, "using the registry", 20)
            wait_for(lambda: _pid_of(second, "rear") is not None, timeout_s=20, what="the second's node")
            first.send_signal(signal.SIGTERM)  # its registry goes with it
            first.communicate(timeout=30)
            taken_over = read_until(second, "stopped answering; started one", 20)
            assert f"[launch] the registry at {address} stopped answering; started one" in taken_over, (
                taken_over
            )
            got: list[int] = []
            node = Node("late_viewer", context=Context(registry=address))
            node.create_subscription(Image, "/rear", lambda m: got.append(m.header.seq))
            spin_until(node, lambda: len(got) >= 3, timeout_s=20, what="frames through the new registry")
            node.destroy()
            assert second.poll() is None
        finally:
            second.send_signal(signal.SIGTERM)
            second.communicate(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate(timeout=30)


def _pid_of_registry(process: subprocess.Popen[str]) -> int | None:
    for child in psutil.Process(process.pid).children():
        with contextlib.suppress(psutil.Error):
            if "registry" in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE:
                return child.pid
    return None


def test_a_publishers_missed_deliveries_are_not_called_its_queue_dropping():
    """`>/tracks 10.0 (1 dropped by its queue)` was a delivery a stalled `topic echo | head` missed: a
    publisher has no queue that drops."""
    from perception.msgs import TopicStats
    from perception.runtime.stats import rate_text

    assert rate_text(TopicStats("/tracks", "percept/Tracks", "pub", msgs_per_s=10.0, dropped_queue=1)) == (
        "10.0 (1 missed by a subscriber on this host)"
    )
    assert rate_text(TopicStats("/frames", "percept/Image", "sub", msgs_per_s=5.0, dropped_queue=3)) == (
        "5.0 (3 dropped by its queue)"
    )
    assert rate_text(TopicStats("/frames", "percept/Image", "sub", msgs_per_s=5.0)) == "5.0"
