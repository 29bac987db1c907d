"""percept bench bus | sim | detect (later issues add grasp, track)"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from perception.bench.common import as_json


def register(verbs: Any) -> None:
    bench = verbs.add_parser("bench", help="Benchmarks, each side by side with its peer.").add_subparsers(
        dest="what", required=True
    )
    p = bench.add_parser("bus", help="Our pub/sub against raw pyzmq: latency and throughput.")
    p.add_argument("--payloads", default="640x480x3,1280x720x3,200B", help="comma-separated payloads")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per side (medians reported)")
    p.add_argument("--count", type=int, default=300, help="messages in each latency phase")
    p.add_argument("--rate", type=float, default=200.0, help="message rate in the latency phase (Hz)")
    p.add_argument("--seconds", type=float, default=1.5, help="length of each throughput phase")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=_bus)

    p = bench.add_parser("detect", help="Detectors side by side: latency per stage, frames/s, mAP.")
    p.add_argument("--model", action="append", required=True, help="an ONNX file; repeat to compare")
    p.add_argument("--scene", choices=["tabletop", "driving"], help="render this scene and score mAP")
    p.add_argument("--frames", type=int, default=50, help="frames to run (and score)")
    p.add_argument("--seed", type=int, default=1000, help="scene seed (keep it apart from training seeds)")
    p.add_argument("--threads", type=int, default=2, help="onnxruntime threads per model")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=_detect)

    p = bench.add_parser("sim", help="Simulator node frames/s against a bare getCameraImage loop.")
    p.add_argument("--renderers", default="egl,tiny", help="comma-separated: egl, tiny")
    p.add_argument("--resolutions", default="320x240,640x480", help="comma-separated sizes")
    p.add_argument("--frames", type=int, default=60, help="frames per side, per renderer and size")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=_sim)


def _bus(args: argparse.Namespace) -> int:
    from perception.bench import bus
    from perception.errors import PerceptError

    payloads = [p.strip() for p in args.payloads.split(",") if p.strip()]
    unknown = [p for p in payloads if p not in bus.PAYLOADS]
    if unknown:
        raise PerceptError(f"unknown payload {unknown[0]!r}; choose from {', '.join(bus.PAYLOADS)}")
    settings = {
        "rounds": args.rounds,
        "count": args.count,
        "rate_hz": args.rate,
        "seconds": args.seconds,
        "transport": "tcp loopback",
        "send_hwm": bus.SEND_HWM,
        "receive_buffer": bus.RECEIVE_BUFFER,
    }
    print(f"bus benchmark: {settings}", flush=True)
    rows = bus.run(payloads, args.rounds, args.count, args.rate, args.seconds)
    print(bus.table(rows))
    print("ratio: ours / raw pyzmq (latency lower is better, throughput higher is better)")
    if args.json:
        print(as_json("bus", rows, settings))
    return 0


def _sim(args: argparse.Namespace) -> int:
    from perception.bench import sim
    from perception.errors import PerceptError

    renderers = [r.strip() for r in args.renderers.split(",") if r.strip()]
    sizes = [s.strip() for s in args.resolutions.split(",") if s.strip()]
    bad = [r for r in renderers if r not in ("egl", "tiny")] + [s for s in sizes if s not in sim.RESOLUTIONS]
    if bad:
        raise PerceptError(
            f"unknown renderer or size {bad[0]!r}; renderers: egl, tiny; sizes: {', '.join(sim.RESOLUTIONS)}"
        )
    settings = {"frames": args.frames, "scene": "tabletop", "objects": 5}
    print(f"sim benchmark: {settings}", flush=True)
    rows = sim.run(renderers, sizes, args.frames)
    print(sim.table(rows))
    print(
        "overhead = 1 - node fps / bare fps: the node's work beyond rendering (conversion, depth, ground "
        "truth, publishing)"
    )
    if args.json:
        print(as_json("sim", rows, settings))
    return 0


def _detect(args: argparse.Namespace) -> int:
    from perception.bench import detect

    settings = {
        "scene": args.scene,
        "frames": args.frames,
        "seed": args.seed,
        "threads": args.threads,
        "image": "640x480",
    }
    print(f"detector benchmark: {settings}", flush=True)
    rows, boxes = detect.run(args.model, args.scene, args.frames, args.seed, args.threads)
    print(detect.table(rows))
    if args.scene:
        print(f"scored against {boxes} ground-truth boxes in {args.frames} {args.scene} frames (pycocotools)")
    if args.json:
        print(
            json.dumps(
                {
                    "benchmark": "detect",
                    "settings": settings,
                    "ground_truth_boxes": boxes,
                    "models": [asdict(r) for r in rows],
                }
            )
        )
    return 0
