"""`percept doctor`: a line per check, ok / warning / error with what to do, on a live and a dead graph."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import free_port, percept


def test_doctor_on_a_running_graph(registry):
    result = percept("doctor", "--json", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    report = {r["check"]: r for r in json.loads(result.stdout.strip().splitlines()[-1])["doctor"]}
    assert set(report) == {
        "registry", "network", "renderer", "video", "cameras", "providers", "cpu", "leftovers", "extras",
        "versions",
    }  # fmt: skip
    assert (
        report["registry"]["status"] == "ok" and "answers at tcp://127.0.0.1:" in report["registry"]["detail"]
    )
    assert report["renderer"]["status"] in ("ok", "warning")
    # The pip OpenCV has no GStreamer: a warning that says what works and what to install.
    assert report["video"]["status"] == "warning" and "GStreamer pipelines need" in report["video"]["detail"]
    assert "CPU" in report["providers"]["detail"] and "percept " in report["versions"]["detail"]
    assert "installed: " in report["extras"]["detail"]
    devices = sorted(p.name for p in Path("/dev").glob("video*"))
    cameras = report["cameras"]["detail"]
    assert cameras.startswith("video devices: ") and all(f"/dev/{d}" in cameras for d in devices), cameras
    assert ("video devices: none" in cameras) == (not devices) and "RealSense: " in cameras
    # Whether int8 sums are exact here: VNNI, or 8-bit weights saturate (as /proc/cpuinfo says).
    cpuinfo = Path("/proc/cpuinfo").read_text()
    flags = next(
        (line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), []
    )
    vnni = "avx512_vnni" in flags or "avx_vnni" in flags
    cpu = report["cpu"]["detail"]
    assert report["cpu"]["status"] == "ok", cpu
    if flags:  # an x86 CPU
        assert ("no VNNI" not in cpu) == vnni and ("AVX2" in cpu) == ("avx2" in flags), cpu
    else:
        assert "no x86 feature flags to read" in cpu, cpu
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ok       registry   answers at") and "10 checks: 0 errors" in result.stdout


def test_doctor_without_a_registry_warns_and_says_what_to_do(monkeypatch):
    monkeypatch.setenv("PERCEPT_REGISTRY", f"tcp://127.0.0.1:{free_port()}")
    result = percept("doctor", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning  registry   none at tcp://127.0.0.1:" in result.stdout
    assert "`percept launch` starts one, or run `percept registry`" in result.stdout


def test_doctor_names_a_host_that_does_not_resolve(monkeypatch):
    monkeypatch.setenv("PERCEPT_HOST", "no-such-host.invalid")
    monkeypatch.setenv("PERCEPT_REGISTRY", f"tcp://127.0.0.1:{free_port()}")
    result = percept("doctor", timeout=60)
    assert result.returncode == 1
    assert "error    network    PERCEPT_HOST=no-such-host.invalid does not resolve" in result.stdout


@pytest.mark.parametrize("host", ["*", "0.0.0.0", "::"])
def test_a_bind_all_host_is_refused_in_one_line(monkeypatch, host):
    """A node advertises the address it binds: PERCEPT_HOST=* used to register tcp://*:PORT, which no
    subscriber could connect to."""
    from perception.cli.doctor import _network
    from perception.errors import PerceptError
    from perception.runtime.transport import default_host

    monkeypatch.setenv("PERCEPT_HOST", host)
    with pytest.raises(PerceptError, match=rf"^PERCEPT_HOST: expected the address .* found '{host}'"):
        default_host()
    status, name, text = _network()
    assert (status, name) == ("error", "network") and "cannot be connected to" in text
    monkeypatch.setenv("PERCEPT_HOST", " ")
    assert default_host() == "127.0.0.1"
