"""What every benchmark shares: a private registry on a free port, and the `--json` report line."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict
from typing import Any

from perception.registry import Registry


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def private_registry() -> Registry:
    """A registry of the benchmark's own, so it never meets (or disturbs) a running graph."""
    registry = Registry(f"tcp://127.0.0.1:{free_port()}")
    registry.serve_in_thread()
    return registry


def as_json(benchmark: str, rows: list[Any], settings: dict[str, Any]) -> str:
    """The one JSON object a benchmark prints last with `--json`."""
    return json.dumps(
        {
            "benchmark": benchmark,
            "settings": settings,
            "cpu_count": os.cpu_count(),
            "results": [asdict(row) for row in rows],
        }
    )
