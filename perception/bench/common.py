"""What every benchmark shares: a private registry on a free port, stopping the processes it started, and
the `--json` report line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import asdict
from typing import Any

from perception.bench.machine import cpu
from perception.runtime.registry import Registry


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def private_registry(keys: Any = False) -> Registry:
    """A registry of the benchmark's own, so it never meets (or disturbs) a running graph (with CURVE
    when given its `keys`, never from PERCEPT_KEYSTORE)."""
    registry = Registry(f"tcp://127.0.0.1:{free_port()}", keys=keys)
    registry.serve_in_thread()
    return registry


def spawn_cli(*args: str, env: dict[str, str], **popen: Any) -> subprocess.Popen[Any]:
    """`percept ARGS` as a child process that dies with the benchmark, even one killed by SIGKILL."""
    from perception.runtime.launcher import die_with_this_process

    command = [sys.executable, "-m", "perception.cli", *args]
    return subprocess.Popen(command, env=env, preexec_fn=die_with_this_process(), **popen)


def stop(*processes: subprocess.Popen[Any], timeout_s: float = 10.0) -> None:
    """Ask every process to end (SIGTERM) at once, then kill those still there after timeout_s."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def as_json(benchmark: str, rows: list[Any], settings: dict[str, Any]) -> str:
    """The one JSON object a benchmark prints last with `--json`."""
    return json.dumps(
        {
            "benchmark": benchmark,
            "settings": settings,
            "cpu_count": os.cpu_count(),
            "cpu": cpu().summary(),
            "results": [asdict(row) for row in rows],
        }
    )
