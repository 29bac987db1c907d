"""`percept bench bus`: our pub/sub over shared memory and over TCP, raw pyzmq, and raw iceoryx2 when it
is installed: same bytes, same machine, one run.

For each side and payload a fresh subscriber process receives three phases from the benchmark process:
messages at 1 kHz, messages at 30 Hz (latency: from the publish call, stamp taken just before it, to a
numpy view of the payload inside the subscriber's callback; both read the same system clock), and
messages sent flat out (frames per second reaching the callback). Every phase counts what was lost:
sent minus received.

Sides:
- `shm`: ours, publisher and subscriber on one host (the default): the frame is copied once into
  shared memory, read in place.
- `shm-loan`: the same, the publisher filling a loaned array (Publisher.loan) before stamping: nothing
  is copied on the way, as for a camera or renderer that writes its frame straight into the loan.
- `tcp`: ours with shared memory off (PERCEPT_SHM=off), as between two hosts (here over loopback).
- `tcp-curve`: the same with CURVE encryption and authentication (a keystore made for the run), as a
  graph secured across hosts would be.
- `zmq`: raw pyzmq PUB/SUB over TCP loopback, multipart [topic, JSON header, frame], `copy=False`.
- `iceoryx2`: raw iceoryx2 (Python bindings), a slice loaned and filled by copy, an event to wake the
  subscriber (whose wait is blocking, as ours is).
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from perception.bench.common import private_registry

PAYLOADS = {
    "200B": (1, 200, 1),
    "640x480x3": (480, 640, 3),
    "1280x720x3": (720, 1280, 3),
    "1920x1080x3": (1080, 1920, 3),
}
OURS = ("shm", "shm-loan", "tcp", "tcp-curve")  # the sides that run our node API
SIDES = (*OURS, "zmq", "iceoryx2")
PHASES = ("1kHz", "30Hz", "flat")
RATES = {"1kHz": 1000.0, "30Hz": 30.0}
SEND_HWM = 100
# Every subscriber may buffer this many messages: ours as its QoS depth, raw pyzmq as its RCVHWM.
RECEIVE_BUFFER = 1000
_PHASE_CODE = {"warm": 0, "1kHz": 1, "30Hz": 2, "flat": 3}
_TOPIC = "/bench/frames"


def iceoryx2_available() -> bool:
    try:
        import iceoryx2  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class Row:
    payload: str
    side: str
    p50_us_1khz: float
    p99_us_1khz: float
    lost_1khz: int
    p50_us_30hz: float
    p99_us_30hz: float
    lost_30hz: int
    frames_per_s: float
    lost_flat: int
    sent: dict[str, int] = field(default_factory=dict)


def _frame(shape: tuple[int, int, int]) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, size=shape, dtype=np.uint8)


def _image_encoding(shape: tuple[int, ...]) -> str:
    return "rgb8" if shape[2] == 3 else "mono8"


# -- subscriber processes ---------------------------------------------------------------------------


class _Tally:
    def __init__(self) -> None:
        self.latencies: dict[str, list[int]] = {p: [] for p in PHASES}
        self.first = self.last = 0

    def arrived(self, stamp: int, phase: str) -> None:
        now = time.time_ns()
        if phase == "flat":
            if not self.latencies["flat"]:
                self.first = now
            self.last = now
        if phase in self.latencies:
            self.latencies[phase].append(now - stamp)

    def report(self) -> dict[str, Any]:
        return {"latencies": self.latencies, "first": self.first, "last": self.last}


def _context(side: str, registry: str, keystore: str | None) -> Any:
    """Our side's context: shared memory or not, CURVE keys or none (never PERCEPT_KEYSTORE's)."""
    from perception.runtime.context import Context
    from perception.runtime.security import TOOLS, Keys

    keys = Keys.load(keystore, TOOLS) if side == "tcp-curve" and keystore else False
    return Context(registry=registry, shared_memory=side.startswith("shm"), keys=keys)


def _subscriber(side: str, address: str, control: Connection, keystore: str | None = None) -> None:
    tally = _Tally()
    if side in OURS:
        from perception import QoS
        from perception.msgs import Image
        from perception.runtime.node import Node

        context = _context(side, address, keystore)
        node = Node("_bench_sub", context=context)

        def callback(msg: Image) -> None:
            np.asarray(msg.data)
            tally.arrived(msg.header.stamp, msg.header.frame_id)

        node.create_subscription(Image, _TOPIC, callback, QoS(depth=RECEIVE_BUFFER))
        control.send("ready")
        while not control.poll():
            node.spin_once(0.01)
        node.destroy()
        context.close()
    elif side == "zmq":
        socket: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.SUB)
        socket.setsockopt(zmq.RCVHWM, RECEIVE_BUFFER)
        socket.setsockopt(zmq.SUBSCRIBE, _TOPIC.encode())
        socket.connect(address)
        control.send("ready")
        while not control.poll():
            if socket.poll(10):
                _topic, header, frame = socket.recv_multipart(copy=False)
                meta = json.loads(header.bytes)
                np.frombuffer(frame.buffer, np.uint8)
                tally.arrived(meta["stamp"], meta["phase"])
        socket.close(0)
    else:
        _iceoryx2_subscriber(address, control, tally)
    control.recv()
    control.send(tally.report())


def _iceoryx2_ports(name: str) -> tuple[Any, Any, Any]:
    import iceoryx2 as iox

    iox.set_log_level(iox.LogLevel.Error)
    node = iox.NodeBuilder.new().create(iox.ServiceType.Ipc)
    service = (
        node.service_builder(iox.ServiceName.new(name))
        .publish_subscribe(iox.Slice[ctypes.c_uint8])
        .subscriber_max_buffer_size(64)  # its memory is preallocated per subscriber: 64, not 1000
        .max_subscribers(1)
        .max_publishers(1)
        .enable_safe_overflow(True)
        .open_or_create()
    )
    events = node.service_builder(iox.ServiceName.new(name + "/events")).event().open_or_create()
    return node, service, events


_PHASE_NAMES = {code: name for name, code in _PHASE_CODE.items()}


def _iceoryx2_subscriber(name: str, control: Connection, tally: _Tally) -> None:
    import iceoryx2 as iox

    node, service, events = _iceoryx2_ports(name)
    subscriber = service.subscriber_builder().create()
    listener = events.listener_builder().create()
    control.send("ready")
    wait = iox.Duration.from_millis(10)
    while not control.poll():
        listener.timed_wait(wait)
        while (sample := subscriber.receive()) is not None:
            view = np.frombuffer(sample.payload().as_memory_view(), np.uint8)
            stamp, phase = view[:16].view(np.uint64).tolist()
            tally.arrived(stamp, _PHASE_NAMES.get(phase, "warm"))
            del view, sample
    del subscriber, listener, service, events, node


# -- publishers -------------------------------------------------------------------------------------


class _OurPublisher:
    def __init__(self, registry: str, side: str, keystore: str | None) -> None:
        from perception.msgs import Header, Image
        from perception.runtime.node import Node

        self._header = Header
        self._image = Image
        self._loan = side == "shm-loan"
        self._context = _context(side, registry, keystore)  # one per side and round: closed after it
        self._node = Node("_bench_pub", context=self._context)
        self._publisher = self._node.create_publisher(Image, _TOPIC, queue_depth=SEND_HWM)

    def wait(self) -> None:
        if not self._publisher.wait_for_subscribers(1, timeout_s=10):
            raise RuntimeError("benchmark subscriber never connected")

    def send(self, data: np.ndarray, phase: str) -> None:
        if self._loan:
            frame = self._publisher.loan(data.shape)
            frame[...] = data  # the producer's own work: its frame, written into the loan
            data = frame
        header = self._header(stamp=time.time_ns(), frame_id=phase)
        self._publisher.publish(self._image(header=header, data=data, encoding=_image_encoding(data.shape)))

    def close(self) -> None:
        self._node.destroy()
        self._context.close()


class _ZmqPublisher:
    def __init__(self) -> None:
        self._socket: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.PUB)
        self._socket.setsockopt(zmq.SNDHWM, SEND_HWM)
        port: int = self._socket.bind_to_random_port("tcp://127.0.0.1")
        self.address = f"tcp://127.0.0.1:{port}"

    def wait(self) -> None:
        time.sleep(0.3)  # raw PUB cannot tell when a subscriber has joined

    def send(self, data: np.ndarray, phase: str) -> None:
        header = json.dumps({"stamp": time.time_ns(), "phase": phase}).encode()
        frames: list[Any] = [_TOPIC.encode(), header, data]
        self._socket.send_multipart(frames, copy=False)

    def close(self) -> None:
        self._socket.close(linger=0)


class _Iceoryx2Publisher:
    def __init__(self) -> None:
        self.address = f"percept/bench/{os.getpid()}-{time.monotonic_ns()}"
        self._node, service, events = _iceoryx2_ports(self.address)
        self._service, self._events = service, events
        self._publisher: Any = None  # made at the first send: a publisher's slices are sized when it is made
        self._notifier = events.notifier_builder().create()
        self._max = 0
        self._stamp = (ctypes.c_uint64 * 2)()

    def wait(self) -> None:
        time.sleep(0.3)

    def send(self, data: np.ndarray, phase: str) -> None:
        import iceoryx2 as iox

        size = data.nbytes + 16
        if size > self._max:
            self._publisher = None
            self._publisher = (
                self._service.publisher_builder()
                .initial_max_slice_len(size)
                .allocation_strategy(iox.AllocationStrategy.PowerOfTwo)
                .create()
            )
            self._max = size
        sample = self._publisher.loan_slice_uninit(size)
        self._stamp[0], self._stamp[1] = time.time_ns(), _PHASE_CODE[phase]
        ctypes.memmove(sample.payload_ptr, self._stamp, 16)
        ctypes.memmove(sample.payload_ptr + 16, data.ctypes.data, data.nbytes)
        sample.assume_init().send()
        self._notifier.notify()

    def close(self) -> None:
        del self._publisher, self._notifier, self._service, self._events, self._node


def _publisher(side: str, registry: str, keystore: str | None) -> Any:
    if side in OURS:
        return _OurPublisher(registry, side, keystore)
    return _ZmqPublisher() if side == "zmq" else _Iceoryx2Publisher()


def _one_side(
    side: str,
    registry: str,
    shape: tuple[int, int, int],
    counts: dict[str, int],
    seconds: float,
    keystore: str | None = None,
) -> Row:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    publisher = _publisher(side, registry, keystore)
    address = registry if side in OURS else publisher.address
    process = ctx.Process(target=_subscriber, args=(side, address, child, keystore), daemon=True)
    process.start()
    sent = dict.fromkeys(PHASES, 0)
    try:
        if not parent.poll(60):
            raise RuntimeError(f"{side} subscriber did not start")
        parent.recv()
        publisher.wait()
        data = _frame(shape)
        for _ in range(20):  # warm-up: connections, caches, the receiver's first wake-ups
            publisher.send(data, "warm")
            time.sleep(0.002)
        time.sleep(0.2)
        for phase, rate in RATES.items():
            period = 1.0 / rate
            next_send = time.perf_counter()
            for _ in range(counts[phase]):
                next_send += period
                while (delay := next_send - time.perf_counter()) > 0:
                    time.sleep(delay)
                publisher.send(data, phase)
                sent[phase] += 1
            time.sleep(0.3)
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            publisher.send(data, "flat")
            sent["flat"] += 1
        time.sleep(0.5)
        parent.send("stop")
        parent.send("report")
        result = parent.recv()
    finally:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
        publisher.close()
    latencies = {p: np.array(v, dtype=np.float64) / 1e3 for p, v in result["latencies"].items()}

    def pct(phase: str, q: float) -> float:
        return round(float(np.percentile(latencies[phase], q)), 1) if len(latencies[phase]) else float("nan")

    received_flat = len(latencies["flat"])
    span = (result["last"] - result["first"]) / 1e9
    return Row(
        payload="",
        side=side,
        p50_us_1khz=pct("1kHz", 50),
        p99_us_1khz=pct("1kHz", 99),
        lost_1khz=sent["1kHz"] - len(latencies["1kHz"]),
        p50_us_30hz=pct("30Hz", 50),
        p99_us_30hz=pct("30Hz", 99),
        lost_30hz=sent["30Hz"] - len(latencies["30Hz"]),
        frames_per_s=round((received_flat - 1) / span, 1) if span > 0 else 0.0,
        lost_flat=sent["flat"] - received_flat,
        sent=sent,
    )


def run(
    payloads: list[str],
    sides: list[str],
    rounds: int = 1,
    count_1khz: int = 1000,
    count_30hz: int = 60,
    seconds: float = 1.5,
) -> list[Row]:
    """Rows per payload and side: medians over `rounds` interleaved rounds (lost: summed)."""
    from perception.runtime.security import REGISTRY, Keys, generate

    counts = {"1kHz": count_1khz, "30Hz": count_30hz}
    rows = []
    with tempfile.TemporaryDirectory(prefix="percept-bench-keys-") as keystore:
        generate(Path(keystore), [])  # the registry's and the tools' (the benchmark's nodes are hidden)
        registry = private_registry()
        secure = private_registry(Keys.load(keystore, REGISTRY)) if "tcp-curve" in sides else None
        try:
            for name in payloads:
                shape = PAYLOADS[name]
                results: dict[str, list[Row]] = {side: [] for side in sides}
                for _ in range(rounds):  # interleaved, so drift in machine load hits every side alike
                    for side in sides:
                        address = secure.address if secure and side == "tcp-curve" else registry.address
                        results[side].append(_one_side(side, address, shape, counts, seconds, keystore))
                for side in sides:
                    rows.append(_median(name, side, results[side]))
        finally:
            registry.stop()
            if secure is not None:
                secure.stop()
    return rows


def _median(payload: str, side: str, rows: list[Row]) -> Row:
    def med(key: str) -> float:
        values = [getattr(r, key) for r in rows if not np.isnan(getattr(r, key))]
        return round(statistics.median(values), 1) if values else float("nan")

    return Row(
        payload=payload,
        side=side,
        p50_us_1khz=med("p50_us_1khz"),
        p99_us_1khz=med("p99_us_1khz"),
        lost_1khz=sum(r.lost_1khz for r in rows),
        p50_us_30hz=med("p50_us_30hz"),
        p99_us_30hz=med("p99_us_30hz"),
        lost_30hz=sum(r.lost_30hz for r in rows),
        frames_per_s=med("frames_per_s"),
        lost_flat=sum(r.lost_flat for r in rows),
        sent={p: sum(r.sent[p] for r in rows) for p in PHASES},
    )


def table(rows: list[Row]) -> str:
    head = (
        f"{'payload':<12} {'side':<9} {'1kHz p50 µs':>11} {'p99':>7} {'lost':>6} "
        f"{'30Hz p50 µs':>11} {'p99':>7} {'lost':>5} {'flat out/s':>10} {'lost':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.payload:<12} {r.side:<9} {r.p50_us_1khz:>11.0f} {r.p99_us_1khz:>7.0f} {r.lost_1khz:>6} "
            f"{r.p50_us_30hz:>11.0f} {r.p99_us_30hz:>7.0f} {r.lost_30hz:>5} {r.frames_per_s:>10.0f} "
            f"{r.lost_flat:>8}"
        )
    return "\n".join(lines)


def ratios(rows: list[Row]) -> list[str]:
    """The comparisons the targets name, one line each."""
    by = {(r.payload, r.side): r for r in rows}
    lines = []
    for payload in dict.fromkeys(r.payload for r in rows):
        tcp, zmq_row = by.get((payload, "tcp")), by.get((payload, "zmq"))
        if tcp and zmq_row:
            lines.append(
                f"{payload}: tcp / raw pyzmq: latency {tcp.p50_us_1khz / zmq_row.p50_us_1khz:.2f}x at 1 kHz, "
                f"{tcp.p50_us_30hz / zmq_row.p50_us_30hz:.2f}x at 30 Hz; "
                f"throughput {tcp.frames_per_s / zmq_row.frames_per_s:.2f}x"
            )
        curve = by.get((payload, "tcp-curve"))
        if tcp and curve:
            lines.append(
                f"{payload}: tcp-curve / tcp: latency {curve.p50_us_1khz / tcp.p50_us_1khz:.2f}x at 1 kHz, "
                f"{curve.p50_us_30hz / tcp.p50_us_30hz:.2f}x at 30 Hz; "
                f"throughput {curve.frames_per_s / tcp.frames_per_s:.2f}x"
            )
    small, large = by.get(("640x480x3", "shm-loan")), by.get(("1920x1080x3", "shm-loan"))
    if small and large:
        lines.append(
            f"shm-loan: 1920x1080x3 p50 / 640x480x3 p50 at 1 kHz: {large.p50_us_1khz / small.p50_us_1khz:.2f}x"
        )
    return lines
