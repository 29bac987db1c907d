"""Coverage-guided fuzzing (atheris, libFuzzer) of the two entry points a peer on the network reaches
first: the wire decoder and the registry's request handler. Where the property tests (tests/runtime/
test_fuzz.py) draw cases from what we think a peer could send, libFuzzer mutates real messages and
keeps the mutants that reach new branches of our code and msgpack's.

    python scripts/fuzz_atheris.py wire -runs=100000
    python scripts/fuzz_atheris.py registry -runs=100000

Every input must be taken or rejected with the documented error (MalformedMessage from the decoder, an
error reply from the registry); anything else raises, and libFuzzer stops with the input that did it.
At exit the outcome counts are printed. Needs `pip install atheris` (wheels for Linux x86_64).
"""

from __future__ import annotations

import os
import struct
import sys
from collections import Counter
from typing import Any

import atheris

with atheris.instrument_imports(include=["perception", "msgpack"]):
    import msgpack

    from perception import msgs
    from perception.errors import MalformedMessage
    from perception.runtime import wire
    from perception.runtime.registry import Registry

import numpy as np

OUTCOMES: Counter[str] = Counter()
REPORT_EVERY = 10_000  # libFuzzer ends the process without Python's exit handlers: counts as it goes


def count(outcome: str) -> None:
    OUTCOMES[outcome] += 1
    if OUTCOMES.total() % REPORT_EVERY == 0:
        report()


def report() -> None:
    print(
        f"atheris after {OUTCOMES.total()} inputs: "
        + ", ".join(f"{k} {v}" for k, v in sorted(OUTCOMES.items())),
        flush=True,
    )


def frames_of(data: bytes) -> list[bytes]:
    """An input as message frames: a count byte, that many 4-byte lengths, then the frames' bytes (a
    length past the end takes what is left): libFuzzer can cut, grow and splice frames."""
    if not data:
        return []
    count = 1 + data[0] % 6
    lengths_end = 1 + 4 * count
    lengths = [struct.unpack(">I", data[1 + 4 * i : 5 + 4 * i].ljust(4, b"\0"))[0] for i in range(count)]
    body, frames = data[lengths_end:], []
    for length in lengths:
        frames.append(body[:length])
        body = body[length:]
    return frames


def as_input(frames: list[Any]) -> bytes:
    raw = [bytes(f) for f in frames]
    return bytes([len(raw) - 1]) + b"".join(struct.pack(">I", len(f)) for f in raw) + b"".join(raw)


def wire_seeds() -> list[bytes]:
    header = msgs.Header(stamp=1, frame_id="camera", seq=3)
    examples = [
        msgs.Image(header=header, data=np.zeros((4, 6, 3), np.uint8), encoding="rgb8"),
        msgs.Detections(
            header,
            np.array([[1, 2, 30, 40]], np.float32),
            np.array([0.9], np.float32),
            np.array([2], np.int32),
            ["car"],
            np.array([7], np.int64),
        ),
        msgs.ExecuteGrasp(msgs.Pose((0.5, 0.0, 0.02), (1.0, 0.0, 0.0, 0.0)), 0.06, False),
        msgs.SetParameters(values={"rate": 10.0, "size": [640, 480]}),
        msgs.String(data="hello"),
    ]
    return [as_input(wire.encode(b"/topic", m, src="seed", n=i)) for i, m in enumerate(examples)]


def fuzz_wire(data: bytes) -> None:
    try:
        wire.decode(frames_of(data))
        count("taken")
    except MalformedMessage:
        count("rejected (MalformedMessage)")


REGISTRY: Registry | None = None


def registry_seeds() -> list[bytes]:
    node = {
        "uid": "u1",
        "name": "/camera",
        "pid": 1,
        "host": "h",
        "publishers": [{"topic": "/camera/image", "endpoint": "tcp://127.0.0.1:5000"}],
        "subscriptions": [{"topic": "/detections"}],
        "services": [{"name": "/camera/set_parameters", "endpoint": "tcp://127.0.0.1:5001"}],
    }
    return [
        msgpack.packb({"op": "sync", "id": 1, "node": node}),
        msgpack.packb({"op": "graph"}),
        msgpack.packb({"op": "service", "name": "/camera/set_parameters"}),
        msgpack.packb({"op": "bye", "uid": "u1"}),
    ]


def fuzz_registry(data: bytes) -> None:
    assert REGISTRY is not None
    reply = REGISTRY._handle(data, None)
    msgpack.packb(reply)  # every reply can be sent
    count("answered ok" if reply.get("ok") else "answered with an error")


def main() -> None:
    global REGISTRY
    target = sys.argv.pop(1) if len(sys.argv) > 1 else ""
    if target not in ("wire", "registry"):
        sys.exit("usage: fuzz_atheris.py wire|registry [libFuzzer options, e.g. -runs=100000]")
    corpus = f"/tmp/percept-atheris-{target}"
    os.makedirs(corpus, exist_ok=True)
    for i, seed in enumerate(wire_seeds() if target == "wire" else registry_seeds()):
        with open(f"{corpus}/seed{i}", "wb") as out:
            out.write(seed)
    if target == "registry":
        from perception.bench.common import free_port

        REGISTRY = Registry(f"tcp://127.0.0.1:{free_port()}", keys=False, expiry_s=3600.0)
    atheris.Setup([sys.argv[0], *sys.argv[1:], corpus], fuzz_wire if target == "wire" else fuzz_registry)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
