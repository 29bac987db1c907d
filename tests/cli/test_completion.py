"""Tab completion as a shell asks for it (argcomplete's protocol): verbs, launch names, message types,
and live topic and node names from the running graph; and the shell code `percept completion` prints."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT, percept


def complete(line: str, tmp_path) -> list[str]:
    out = tmp_path / "completions"
    env = {
        **os.environ,
        "_ARGCOMPLETE": "1",
        "_ARGCOMPLETE_IFS": "\n",
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
        "_ARGCOMPLETE_STDOUT_FILENAME": str(out),
    }
    subprocess.run(
        [sys.executable, "-m", "perception.cli"],
        cwd=ROOT,
        env=env,
        timeout=30,
        check=True,
        capture_output=True,
    )
    return [c.strip() for c in out.read_text().split("\n") if c.strip()]


def test_verbs_launch_names_and_message_types_complete(tmp_path):
    assert complete("percept top", tmp_path) == ["topic"]
    assert set(complete("percept topic ", tmp_path)) >= {
        "list",
        "info",
        "type",
        "find",
        "echo",
        "hz",
        "bw",
        "pub",
    }
    assert {"sim_detect", "sim_driving"} <= set(complete("percept launch sim_", tmp_path))
    assert complete("percept interface show percept/Detecti", tmp_path) == ["percept/Detections"]
    assert "--show-args" in complete("percept launch --sh", tmp_path)


def test_live_topic_and_node_names_complete(registry, spawn, tmp_path):
    spawn("-p", "rate:=50.0", node="SeqPublisher")
    wait = percept("topic", "echo", "/frames", "--once", "--timeout", "20")
    assert wait.returncode == 0, wait.stderr
    assert complete("percept topic echo /fr", tmp_path) == ["/frames"]
    assert complete("percept param list /seq", tmp_path) == ["/seq_publisher"]
    assert complete("percept foxglove /fr", tmp_path) == ["/frames"]  # verbs taking several topics too
    assert complete("percept record -o x.mcap /fr", tmp_path) == ["/frames"]


def test_completion_prints_shell_code():
    bash = percept("completion", "bash")
    assert bash.returncode == 0 and "complete " in bash.stdout and "percept" in bash.stdout
    assert percept("completion", "zsh").returncode == 0
