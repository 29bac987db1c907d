"""`percept bench bus`: our pub/sub against raw pyzmq, same bytes, same machine, one run.

Each round starts a fresh subscriber process per side and payload. Latency: messages at a fixed rate,
measured from the publish call to a numpy view of the frame in the subscriber's callback (stamps from
the shared system clock). Throughput: the publisher sends flat out and the subscriber counts what its
callback receives per second. Both sides send over TCP loopback, with the same queue limits.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import statistics
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import zmq

from perception.bench.common import private_registry

PAYLOADS = {"640x480x3": (480, 640, 3), "1280x720x3": (720, 1280, 3), "200B": (1, 200, 1)}
SEND_HWM = 100
# Both subscribers may buffer this many messages: ours as its QoS depth, raw pyzmq as its RCVHWM.
RECEIVE_BUFFER = 1000


@dataclass
class Row:
    payload: str
    p50_us: float
    p99_us: float
    fps: float
    raw_p50_us: float
    raw_p99_us: float
    raw_fps: float
    latency_ratio: float
    throughput_ratio: float


def _frame(shape: tuple[int, int, int]) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, size=shape, dtype=np.uint8)


# -- subscriber processes ---------------------------------------------------------------------------


def _subscriber(mode: str, endpoint_or_registry: str, control: Connection) -> None:
    latencies: list[int] = []
    counts = {"n": 0, "first": 0, "last": 0}

    def on_message(stamp: int, phase: str) -> None:
        now = time.time_ns()
        if phase == "lat":
            latencies.append(now - stamp)
        elif phase == "thr":
            if counts["n"] == 0:
                counts["first"] = now
            counts["n"] += 1
            counts["last"] = now

    if mode == "ours":
        from perception import QoS
        from perception.msgs import Image
        from perception.runtime.context import Context
        from perception.runtime.node import Node

        node = Node("_bench_sub", context=Context(registry=endpoint_or_registry))

        def callback(msg: Image) -> None:
            np.asarray(msg.data)
            on_message(msg.header.stamp, msg.header.frame_id)

        node.create_subscription(Image, "/bench/frames", callback, QoS(depth=RECEIVE_BUFFER))
        control.send("ready")
        while not control.poll():
            node.spin_once(0.01)
        node.destroy()
    else:
        socket: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.SUB)
        socket.setsockopt(zmq.RCVHWM, RECEIVE_BUFFER)
        socket.setsockopt(zmq.SUBSCRIBE, b"/bench/frames")
        socket.connect(endpoint_or_registry)
        control.send("ready")
        while not control.poll():
            if socket.poll(10):
                _topic, header, frame = socket.recv_multipart(copy=False)
                meta = json.loads(header.bytes)
                np.frombuffer(frame.buffer, np.uint8)
                on_message(meta["stamp"], meta["phase"])
        socket.close(0)
    control.recv()
    control.send({"latencies": latencies, **counts})


# -- publishers -------------------------------------------------------------------------------------


class _OurPublisher:
    def __init__(self, registry: str) -> None:
        from perception.msgs import Header, Image
        from perception.runtime.context import Context
        from perception.runtime.node import Node

        self._header = Header
        self._node = Node("_bench_pub", context=Context(registry=registry))
        self._publisher = self._node.create_publisher(Image, "/bench/frames", queue_depth=SEND_HWM)
        self._image = Image

    def wait(self) -> None:
        if not self._publisher.wait_for_subscribers(1, timeout_s=10):
            raise RuntimeError("benchmark subscriber never connected")

    def send(self, data: np.ndarray, phase: str) -> None:
        encoding = "rgb8" if data.shape[2] == 3 else "mono8"
        header = self._header(stamp=time.time_ns(), frame_id=phase)
        self._publisher.publish(self._image(header=header, data=data, encoding=encoding))

    def close(self) -> None:
        self._node.destroy()


class _RawPublisher:
    def __init__(self) -> None:
        self._socket: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.PUB)
        self._socket.setsockopt(zmq.SNDHWM, SEND_HWM)
        port: int = self._socket.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"

    def wait(self) -> None:
        time.sleep(0.3)  # raw PUB cannot tell when a subscriber has joined

    def send(self, data: np.ndarray, phase: str) -> None:
        header = json.dumps({"stamp": time.time_ns(), "phase": phase}).encode()
        frames: list[Any] = [b"/bench/frames", header, data]
        self._socket.send_multipart(frames, copy=False)

    def close(self) -> None:
        self._socket.close(linger=0)


def _one_side(
    mode: str, registry: str, shape: tuple[int, int, int], count: int, rate_hz: float, seconds: float
) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    publisher: Any = _OurPublisher(registry) if mode == "ours" else _RawPublisher()
    target = registry if mode == "ours" else publisher.endpoint
    process = ctx.Process(target=_subscriber, args=(mode, target, child), daemon=True)
    process.start()
    try:
        if not parent.poll(30):
            raise RuntimeError(f"{mode} subscriber did not start")
        parent.recv()
        publisher.wait()
        data = _frame(shape)
        for _ in range(20):  # warm-up: connections, caches, the receiver's first wake-ups
            publisher.send(data, "warm")
            time.sleep(0.002)
        period = 1.0 / rate_hz
        next_send = time.perf_counter()
        for _ in range(count):
            next_send += period
            while (delay := next_send - time.perf_counter()) > 0:
                time.sleep(delay)
            publisher.send(data, "lat")
        time.sleep(0.2)
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            publisher.send(data, "thr")
        time.sleep(0.5)
        parent.send("stop")
        parent.send("report")
        result = parent.recv()
    finally:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
        publisher.close()
    latencies = np.array(result["latencies"], dtype=np.float64) / 1e3
    span = (result["last"] - result["first"]) / 1e9
    return {
        "p50_us": float(np.percentile(latencies, 50)) if len(latencies) else float("nan"),
        "p99_us": float(np.percentile(latencies, 99)) if len(latencies) else float("nan"),
        "fps": (result["n"] - 1) / span if span > 0 else 0.0,
        "received": float(len(latencies)),
    }


def run(
    payloads: list[str], rounds: int = 3, count: int = 300, rate_hz: float = 200.0, seconds: float = 1.5
) -> list[Row]:

    registry = private_registry()
    rows = []
    try:
        for name in payloads:
            shape = PAYLOADS[name]
            ours: list[dict[str, float]] = []
            raw: list[dict[str, float]] = []
            for _ in range(rounds):  # interleaved, so drift in machine load hits both sides alike
                ours.append(_one_side("ours", registry.address, shape, count, rate_hz, seconds))
                raw.append(_one_side("raw", registry.address, shape, count, rate_hz, seconds))
            med = {key: statistics.median(r[key] for r in ours) for key in ours[0]}
            rmed = {key: statistics.median(r[key] for r in raw) for key in raw[0]}
            rows.append(
                Row(
                    payload=name,
                    p50_us=round(med["p50_us"], 1),
                    p99_us=round(med["p99_us"], 1),
                    fps=round(med["fps"], 1),
                    raw_p50_us=round(rmed["p50_us"], 1),
                    raw_p99_us=round(rmed["p99_us"], 1),
                    raw_fps=round(rmed["fps"], 1),
                    latency_ratio=round(med["p50_us"] / rmed["p50_us"], 3),
                    throughput_ratio=round(med["fps"] / rmed["fps"], 3),
                )
            )
    finally:
        registry.stop()
    return rows


def table(rows: list[Row]) -> str:
    head = (
        f"{'payload':<11} {'p50 µs':>8} {'raw p50':>8} {'ratio':>6} {'p99 µs':>8} {'raw p99':>8} "
        f"{'msgs/s':>8} {'raw msg/s':>9} {'ratio':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.payload:<11} {r.p50_us:>8.0f} {r.raw_p50_us:>8.0f} {r.latency_ratio:>6.2f} {r.p99_us:>8.0f} "
            f"{r.raw_p99_us:>8.0f} {r.fps:>8.0f} {r.raw_fps:>9.0f} {r.throughput_ratio:>6.2f}"
        )
    return "\n".join(lines)
