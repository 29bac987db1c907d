"""Fixtures for tests that run real nodes in real processes over real sockets."""

from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from perception.runtime.context import Context
from perception.runtime.registry import Registry

TESTS = Path(__file__).parent
ROOT = TESTS.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status_rates(launch_output: str, node: str, topic: str) -> list[float]:
    """The rates a launcher's status tables gave `node` for publishing `topic` (`>topic 9.8`)."""
    rows = [line for line in launch_output.splitlines() if line.startswith(f"{node} ")]
    return [float(rate) for row in rows for rate in re.findall(rf">{re.escape(topic)} (\d+\.\d+)", row)]


def percept(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perception.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.fixture(autouse=True, scope="session")
def _suite_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Rendered benchmark suites go to a folder of this run, never the user's cache (children inherit it)."""
    before = os.environ.get("PERCEPT_CACHE")
    os.environ["PERCEPT_CACHE"] = str(tmp_path_factory.mktemp("percept-cache"))
    yield
    if before is None:
        os.environ.pop("PERCEPT_CACHE", None)
    else:
        os.environ["PERCEPT_CACHE"] = before


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    """A registry on a free port, in this process; child processes find it through PERCEPT_REGISTRY."""
    reg = Registry(f"tcp://127.0.0.1:{free_port()}")
    reg.serve_in_thread()
    monkeypatch.setenv("PERCEPT_REGISTRY", reg.address)
    yield reg
    reg.stop()


@pytest.fixture
def context(registry: Registry) -> Context:
    return Context(registry=registry.address)


@pytest.fixture
def keyed_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A graph with a keystore: one made by `percept keys generate` (the tools' key, and those of the test
    scenes' nodes: /viewer_scene, /foxglove), a CURVE registry on a free port in this process, and
    PERCEPT_KEYSTORE and PERCEPT_REGISTRY set for child processes (a node takes its own key with
    PERCEPT_ENCLAVE). Yields the keystore."""
    from perception.runtime.security import REGISTRY, Keys

    keystore = tmp_path / "keys"
    made = percept("keys", "generate", str(keystore), "--node", "viewer_scene", "--node", "foxglove")
    assert made.returncode == 0, made.stderr
    reg = Registry(f"tcp://127.0.0.1:{free_port()}", keys=Keys.load(keystore, REGISTRY))
    reg.serve_in_thread()
    monkeypatch.setenv("PERCEPT_REGISTRY", reg.address)
    monkeypatch.setenv("PERCEPT_KEYSTORE", str(keystore))
    monkeypatch.delenv("PERCEPT_ENCLAVE", raising=False)
    yield keystore
    reg.stop()


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start `python -m perception.cli ARGS...`; every process is killed at the end of the test."""
    processes: list[subprocess.Popen[str]] = []

    def start(
        *args: str, node: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        command = [sys.executable, "-m", "perception.cli", *args]
        if node is not None:
            command = [sys.executable, "-m", "perception.cli", "run", f"{TESTS / 'nodes.py'}:{node}", *args]
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        if process.stdout:
            process.stdout.close()


def spawn_sim(spawn: Callable[..., subprocess.Popen[str]], **params: str) -> subprocess.Popen[str]:
    """A sim node process: fast clock, TinyRenderer, 160 x 120 unless `params` say otherwise."""
    settings = {"clock": "fast", "renderer": "tiny", "width": "160", "height": "120", **params}
    return spawn(
        "run", "sim.node:SimNode", *[arg for k, v in settings.items() for arg in ("-p", f"{k}:={v}")]
    )


# How long a test waits for a condition that another process brings about, unless it says otherwise. A
# deadline costs nothing when the condition comes; on a 2-core machine a child's start-up and its first
# 150 frames once took more than 10 s.
WAIT_S = 60.0


def wait_for(condition: Callable[[], object], timeout_s: float = WAIT_S, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


def settled_signal(pid: int, signum: int) -> bool:
    """Whether process `pid` has set what `signum` does, a handler or ignoring it (Linux: the SigCgt and
    SigIgn masks in /proc), rather than leaving the default, which ends the process."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    masks = [
        int(line.split()[1], 16) for line in status.splitlines() if line.startswith(("SigCgt:", "SigIgn:"))
    ]
    return any(mask >> (signum - 1) & 1 for mask in masks)


def send_until(
    node: object,
    send: Callable[[], None],
    answered: Callable[[], object],
    timeout_s: float = 20.0,
    what: str = "",
) -> None:
    """`send()` every quarter second until `answered()`: the peer's publisher may join ours a moment after
    its subscription did (discovery runs both ways on its own), and a PUB drops what no subscriber takes."""
    deadline = time.monotonic() + timeout_s
    while not answered():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what or 'an answer'}")
        send()
        resend = time.monotonic() + 0.25
        while not answered() and time.monotonic() < resend:
            node.spin_once(0.02)  # type: ignore[attr-defined]


def spin_until(
    node: object, condition: Callable[[], object], timeout_s: float = WAIT_S, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what or 'condition'}")
        node.spin_once(0.02)  # type: ignore[attr-defined]


def read_until(process: subprocess.Popen[str], text: str, timeout_s: float) -> str:
    """A process's output until `text` appears (all of it read so far, if it never does). Read from
    the pipe itself: the text wrapper's buffer would hide lines from select()."""
    assert process.stdout is not None
    fd, read = process.stdout.fileno(), b""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and text.encode() not in read:
        if select.select([fd], [], [], 0.1)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            read += chunk
    return read.decode(errors="replace")
