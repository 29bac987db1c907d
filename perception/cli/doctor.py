"""percept doctor: what works on this machine and what to do about what does not, a line each (as
`ros2 doctor` and `flutter doctor`): the registry, the network settings, the renderer, OpenCV's video
back-ends, onnxruntime's execution providers, the CPU's vector extensions, leftovers of dead processes,
the extras and versions."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import socket
from collections.abc import Callable
from typing import Any

OK, WARNING, ERROR = "ok", "warning", "error"


def register(verbs: Any) -> None:
    p = verbs.add_parser(
        "doctor", help="Check this machine: registry, renderer, cameras, providers, versions."
    )
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    checks: list[Callable[[], tuple[str, str, str]]] = [
        _registry,
        _network,
        _renderer,
        _video,
        _cameras,
        _providers,
        _cpu,
        _leftovers,
        _extras,
        _versions,
    ]
    results = []
    for check in checks:
        try:
            status, name, text = check()
        except Exception as exc:  # a check that breaks is itself a finding, never a traceback
            status, name, text = (
                ERROR,
                check.__name__.strip("_"),
                f"the check failed: {type(exc).__name__}: {exc}",
            )
        results.append({"check": name, "status": status, "detail": text})
        print(f"{status:<8} {name:<10} {text}", flush=True)
    errors = sum(r["status"] == ERROR for r in results)
    warnings = sum(r["status"] == WARNING for r in results)
    print(f"{len(results)} checks: {errors} errors, {warnings} warnings")
    if args.json:
        print(json.dumps({"doctor": results}))
    return 1 if errors else 0


def _registry() -> tuple[str, str, str]:
    from perception.runtime import registry

    address = registry.registry_address()
    if registry.is_running(address, timeout_s=0.5):
        nodes = registry.query("graph", timeout_s=1.0)["nodes"]
        return OK, "registry", f"answers at {address} ({len(nodes)} nodes)"
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    taken = _port_taken(host, int(port)) if port.isdigit() else False
    if taken:
        return (
            ERROR,
            "registry",
            f"port {port} at {host} is taken by something that is not a registry; set PERCEPT_REGISTRY to another",
        )
    return WARNING, "registry", f"none at {address}: `percept launch` starts one, or run `percept registry`"


def _port_taken(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host if host not in ("*", "") else "127.0.0.1", port))
        except OSError:
            return True
    return False


def _network() -> tuple[str, str, str]:
    from perception.errors import PerceptError
    from perception.runtime.transport import default_host

    try:
        host = default_host()
    except PerceptError as exc:
        return ERROR, "network", str(exc)
    if host not in ("127.0.0.1", "localhost"):
        try:
            socket.getaddrinfo(host, None)
        except OSError:
            return (
                ERROR,
                "network",
                f"PERCEPT_HOST={host} does not resolve; set it to this machine's interface address",
            )
        return OK, "network", f"nodes bind {host}: reachable from other machines on that network"
    return OK, "network", "nodes bind 127.0.0.1 (this machine only; PERCEPT_HOST opens a graph to a network)"


def _renderer() -> tuple[str, str, str]:
    if importlib.util.find_spec("pybullet") is None:
        return (
            WARNING,
            "renderer",
            "no simulator: pip install 'percept[sim]' (cameras and the detector need none)",
        )
    from sim.world import World

    world = World("auto")
    try:
        renderer = world.renderer
    finally:
        world.close()
    if renderer == "egl":
        return OK, "renderer", "PyBullet's EGL plugin (Mesa on a CPU, the GPU's driver where there is one)"
    return (
        WARNING,
        "renderer",
        "TinyRenderer only (~9 frames/s at 640x480): install an EGL library (Debian: libegl1) for 2-3x",
    )


def _video() -> tuple[str, str, str]:
    import cv2

    from perception.camera.source import video_backends

    backends = video_backends()
    have = ", ".join(f"{name} {'yes' if on else 'no'}" for name, on in backends.items())
    if not backends.get("FFMPEG") and not backends.get("v4l/v4l2"):
        return (
            ERROR,
            "video",
            f"OpenCV {cv2.__version__} reads no cameras or files ({have}); reinstall opencv-python-headless",
        )
    if not backends.get("GStreamer"):
        return (
            WARNING,
            "video",
            (
                f"OpenCV {cv2.__version__}: {have}; GStreamer pipelines need an OpenCV built with it (Debian's "
                "python3-opencv); devices, files and RTSP/HTTP work"
            ),
        )
    return OK, "video", f"OpenCV {cv2.__version__}: {have}"


def _cameras() -> tuple[str, str, str]:
    """The cameras a graph could open here: video devices (V4L2) and RealSense cameras (with the
    realsense extra). None is no fault: the simulator needs none."""
    from perception.camera.source import video_devices

    devices = video_devices()
    text = "video devices: " + (
        ", ".join(f"{path} ({name})" if name else path for path, name in devices) or "none"
    )
    if importlib.util.find_spec("pyrealsense2") is None:
        return OK, "cameras", text + "; RealSense: not looked for (the realsense extra)"
    from perception.camera.depth import realsense_devices

    found = realsense_devices(importlib.import_module("pyrealsense2"))
    listed = ", ".join(f"{name} (serial {serial})" for name, serial in found) or "none connected"
    return OK, "cameras", f"{text}; RealSense: {listed}"


def _providers() -> tuple[str, str, str]:
    import onnxruntime

    providers = [p.removesuffix("ExecutionProvider") for p in onnxruntime.get_available_providers()]
    accelerated = [p for p in providers if p not in ("CPU", "Azure")]
    text = f"onnxruntime {onnxruntime.__version__}: {', '.join(providers)}"
    if not accelerated:
        return OK, "providers", text + " (CPU only; onnxruntime-gpu or -openvino add others)"
    return OK, "providers", text


def _cpu() -> tuple[str, str, str]:
    from perception.bench.machine import cpu

    found = cpu()
    if not found.flags_read:
        return OK, "cpu", found.summary()
    if found.vnni:
        return OK, "cpu", found.summary() + "; int8 models run at their best here"
    return (
        OK,
        "cpu",
        found.summary() + "; no VNNI: int8 gains less here, and an int8 model with 8-bit weights loses "
        "accuracy (ours has 7-bit weights, as `percept export --int8` makes them)",
    )


def _leftovers() -> tuple[str, str, str]:
    """Shared-memory segments and pipes left by processes killed outright: removed here (any process's
    first use of shared memory removes them as well)."""
    from perception.runtime import shm

    if not shm.enabled():
        return OK, "leftovers", "shared memory is off here (PERCEPT_SHM, or no /dev/shm): frames go over TCP"
    removed = shm.sweep()
    ours = [n for n in os.listdir(shm.SHM_DIR) if n.startswith(shm.PREFIX)]
    stats = os.statvfs(shm.SHM_DIR)
    free_mib = stats.f_bavail * stats.f_frsize / 2**20
    text = (
        f"shared memory: removed {len(removed)} segments and pipes of dead processes; "
        f"{len(ours)} in use; {free_mib:,.0f} MiB free in {shm.SHM_DIR}"
    )
    if free_mib < 256:  # Docker's default /dev/shm is 64 MB
        return (
            WARNING,
            "leftovers",
            text + " (small: run containers with --shm-size=1g, or PERCEPT_SHM_MB lower)",
        )
    return OK, "leftovers", text


def _extras() -> tuple[str, str, str]:
    from perception.installed import EXTRAS

    by_extra: dict[str, list[str]] = {}
    for module, (extra, _) in EXTRAS.items():
        by_extra.setdefault(extra, []).append(module)
    have = [e for e, modules in by_extra.items() if all(importlib.util.find_spec(m) for m in modules)]
    missing = [e for e in by_extra if e not in have]
    text = f"installed: {', '.join(sorted(have)) or 'none'}"
    if missing:
        text += f"; not installed: {', '.join(sorted(missing))} (pip install 'percept[{missing[0]}]' ...)"
    return OK, "extras", text


def _versions() -> tuple[str, str, str]:
    from perception import __version__

    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "-"

    import zmq

    parts = [
        f"percept {__version__}",
        f"Python {platform.python_version()}",
        f"numpy {version('numpy')}",
        f"pyzmq {zmq.__version__} (libzmq {zmq.zmq_version()})",
        f"onnxruntime {version('onnxruntime')}",
        f"opencv {version('opencv-python-headless')}",
        f"pybullet {version('pybullet')}",
        f"mcap {version('mcap')}",
    ]
    return OK, "versions", ", ".join(parts)
