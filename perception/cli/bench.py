"""percept bench bus | sim | detect (later issues add grasp, track)"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from perception.bench.common import as_json
from perception.cli.common import non_negative_float, positive_float, positive_int, positive_numbers, rows_arg

# The driving graph's detector runs a second pass for small objects on these rows of the frame (around
# the simulated camera's horizon), scaled by this (launch/driving_tracking.yaml's small_object_zoom and
# small_object_rows); the tracker benchmark runs the same detector.
SMALL_OBJECT_ZOOM = 1.25
SMALL_OBJECT_ROWS = (192, 336)


def register(verbs: Any) -> None:
    bench = verbs.add_parser("bench", help="Benchmarks, each side by side with its peer.").add_subparsers(
        dest="what", required=True
    )
    p = bench.add_parser("bus", help="Our pub/sub against raw pyzmq: latency and throughput.")
    p.add_argument("--payloads", default="640x480x3,1280x720x3,200B", help="comma-separated payloads")
    p.add_argument(
        "--rounds", type=positive_int, default=3, help="interleaved rounds per side (medians reported)"
    )
    p.add_argument("--count", type=positive_int, default=300, help="messages in each latency phase")
    p.add_argument(
        "--rate", type=positive_float, default=200.0, help="message rate in the latency phase (Hz)"
    )
    p.add_argument("--seconds", type=positive_float, default=1.5, help="length of each throughput phase")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=_bus)

    p = bench.add_parser("detect", help="Detectors side by side: latency per stage, frames/s, mAP.")
    p.add_argument("--model", action="append", required=True, help="an ONNX file; repeat to compare")
    p.add_argument("--scene", choices=["tabletop", "driving"], help="render this scene and score mAP")
    p.add_argument("--frames", type=positive_int, default=50, help="frames to run (and score)")
    p.add_argument("--seed", type=int, default=1000, help="scene seed (keep it apart from training seeds)")
    p.add_argument("--threads", type=positive_int, default=2, help="onnxruntime threads per model")
    p.add_argument(
        "--small-object-zoom",
        type=float,
        default=0.0,
        metavar="Z",
        help="also run each model of free input size with a second pass for small objects on the frame "
        "scaled by Z",
    )
    p.add_argument(
        "--small-object-rows", type=rows_arg, metavar="TOP,BOTTOM", help="the image rows that pass covers"
    )
    p.add_argument(
        "--confidence",
        type=float,
        default=0.25,
        help="score threshold for every model while timing (the node's default)",
    )
    p.add_argument(
        "--map-confidence",
        type=float,
        default=0.001,
        help="score threshold while scoring mAP (Ultralytics' val uses 0.001: mAP needs the whole curve)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=_detect)

    p = bench.add_parser("graph", help="The detector in a launched sim -> detector graph: keeps up? latency?")
    p.add_argument("--model", default="models/percept.onnx", help="an ONNX detector")
    p.add_argument("--scenes", default="tabletop,driving", help="comma-separated: tabletop, driving")
    p.add_argument(
        "--rates",
        type=positive_numbers,
        default="10,20",
        help="comma-separated camera rates (frames/s) to try",
    )
    p.add_argument("--seconds", type=positive_float, default=10.0, help="measured seconds per scene and rate")
    p.add_argument(
        "--sim-nice",
        type=int,
        default=19,
        help="the simulator's CPU niceness, 0-19 (default 19, its own default; 0 to see it compete)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=_graph)

    p = bench.add_parser(
        "grasp", help="Pick-and-place episodes: grasp success, table clearing, planning time."
    )
    p.add_argument("--episodes", type=positive_int, default=10)
    p.add_argument("--objects", type=int, default=5, help="objects per episode")
    p.add_argument("--seed", type=int, default=1000, help="seed of the first episode (then +1 each)")
    p.add_argument("--model", default="models/percept.onnx", help="the detector in the loop")
    p.add_argument("--truth", action="store_true", help="ground-truth boxes instead of the detector")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=_grasp)

    p = bench.add_parser("track", help="The tracker on driving sequences: MOTA, IDF1, HOTA (TrackEval).")
    p.add_argument(
        "--sequences",
        type=int,
        default=12,
        help="10-second driving sequences (12: two minutes; single sequences range 0.83-0.98 MOTA)",
    )
    p.add_argument("--seed", type=int, default=1000, help="scene seed (keep it apart from training seeds)")
    p.add_argument(
        "--rate",
        type=float,
        default=10.0,
        help="camera frames/s (default 10: launch/driving_tracking.yaml's rate, and KITTI's)",
    )
    p.add_argument("--model", default="models/percept.onnx", help="the detector in the loop")
    p.add_argument(
        "--small-object-zoom",
        type=float,
        default=SMALL_OBJECT_ZOOM,
        metavar="Z",
        help="the detector's second pass for small objects, on the frame scaled by Z (default "
        f"{SMALL_OBJECT_ZOOM}: launch/driving_tracking.yaml's); 0: none",
    )
    p.add_argument(
        "--small-object-rows",
        type=rows_arg,
        default=SMALL_OBJECT_ROWS,
        metavar="TOP,BOTTOM",
        help=f"the image rows that pass covers (default {SMALL_OBJECT_ROWS[0]},{SMALL_OBJECT_ROWS[1]}: "
        "around the horizon)",
    )
    p.add_argument(
        "--truth", action="store_true", help="ground-truth boxes with noise instead of the detector"
    )
    p.add_argument(
        "--drop", type=non_negative_float, default=0.1, help="with --truth: share of boxes dropped"
    )
    p.add_argument(
        "--jitter",
        type=non_negative_float,
        default=0.05,
        help="with --truth: box edge noise, share of its size",
    )
    p.add_argument(
        "--false-positives", type=non_negative_float, default=0.5, help="with --truth: per frame, on average"
    )
    p.add_argument(
        "--write-mot", type=Path, metavar="DIR", help="also write each sequence as a MOTChallenge folder here"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=_track)

    p = bench.add_parser("mot", help="Our tracker beside SORT, ByteTrack, OC-SORT on MOTChallenge folders.")
    p.add_argument("sequences", nargs="+", type=Path, help="MOTChallenge sequence folders (det/, gt/)")
    p.add_argument(
        "--trackers",
        default="ours,sort,bytetrack,ocsort,oracle",
        help="comma-separated: ours, sort, bytetrack, ocsort, oracle (the detections ours trusts, given "
        "the ground truth's identities: what perfect association would score)",
    )
    p.add_argument(
        "--protocol",
        choices=["flags", "mot17"],
        default="flags",
        help="flags: gt flag 0 = ignore region (our exports); mot17: pedestrians scored, distractors ignored",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=_mot)

    p = bench.add_parser("record", help="percept record on 640x480 frames + detections at rising rates.")
    p.add_argument(
        "--rates", type=positive_numbers, default="30,60,120", help="comma-separated frame rates (Hz)"
    )
    p.add_argument("--seconds", type=positive_float, default=5.0, help="publishing time per rate")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=_record)

    p = bench.add_parser(
        "view", help="CPU of percept view per watched 640x480 stream, against 5%% of a core."
    )
    p.add_argument("--fps", type=positive_float, default=15.0, help="frame rate each stream is watched at")
    p.add_argument("--seconds", type=positive_float, default=10.0, help="measuring time per phase")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=_view)

    p = bench.add_parser("sim", help="Simulator node frames/s against a bare getCameraImage loop.")
    p.add_argument("--renderers", default="egl,tiny", help="comma-separated: egl, tiny")
    p.add_argument("--resolutions", default="320x240,640x480", help="comma-separated sizes")
    p.add_argument("--frames", type=positive_int, default=60, help="frames per side, per renderer and size")
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


def _grasp(args: argparse.Namespace) -> int:
    from perception.bench import grasp
    from perception.errors import PerceptError

    if args.episodes < 1 or not 1 <= args.objects <= 8:
        raise PerceptError(
            f"expected --episodes >= 1 and --objects 1-8, found {args.episodes} and {args.objects}"
        )
    settings = {
        "episodes": args.episodes,
        "objects": args.objects,
        "seed": args.seed,
        "boxes": "ground truth" if args.truth else args.model,
        "image": "640x480",
    }
    print(f"grasp benchmark: {settings}", flush=True)
    summary, episodes = grasp.run(args.episodes, args.objects, args.seed, None if args.truth else args.model)
    print(grasp.table(summary, episodes))
    if args.json:
        report = {"benchmark": "grasp", "settings": settings, **asdict(summary)}
        report["episode_details"] = [asdict(e) for e in episodes]
        print(json.dumps(report))
    return 0


def _track(args: argparse.Namespace) -> int:
    from perception.errors import PerceptError

    try:
        import trackeval  # noqa: F401

        from perception.bench import track
    except ImportError:
        raise PerceptError(
            "percept bench track scores with TrackEval: pip install 'percept[bench]'"
        ) from None
    if args.sequences < 1:
        raise PerceptError(f"--sequences: expected at least 1, found {args.sequences}")
    if not 1 <= args.rate <= 60:
        raise PerceptError(f"--rate: expected 1-60 frames/s, found {args.rate}")
    noise = {"drop": args.drop, "jitter": args.jitter, "false_positives": args.false_positives}
    settings = {
        "sequences": args.sequences,
        "seed": args.seed,
        "rate": args.rate,
        "boxes": "ground truth with noise" if args.truth else args.model,
        **(
            {"noise": noise}
            if args.truth
            else {"small_object_zoom": args.small_object_zoom, "small_object_rows": args.small_object_rows}
        ),
    }
    print(f"track benchmark: {settings}", flush=True)
    summary, per_sequence = track.run(
        args.sequences,
        args.seed,
        None if args.truth else args.model,
        noise,
        rate=args.rate,
        write_mot=args.write_mot,
        small_object_zoom=args.small_object_zoom,
        small_object_rows=args.small_object_rows,
    )
    print(track.table(summary, per_sequence))
    if args.json:
        print(
            json.dumps(
                {"benchmark": "track", "settings": settings, **asdict(summary), "per_sequence": per_sequence}
            )
        )
    return 0


def _record(args: argparse.Namespace) -> int:
    from perception.bench import record

    rates = args.rates
    settings = {"rates": rates, "seconds": args.seconds, "frame": "640x480x3 + 5 detections"}
    print(f"record benchmark (percept record as its own process): {settings}", flush=True)
    rows = record.run(rates, args.seconds)
    print(record.table(rows))
    if args.json:
        print(as_json("record", rows, settings))
    return 0


def _mot(args: argparse.Namespace) -> int:
    from perception.errors import PerceptError

    trackers = [t.strip() for t in args.trackers.split(",") if t.strip()]
    from perception.bench import mot

    unknown = sorted(set(trackers) - set(mot.TRACKERS))
    if unknown or not trackers:
        raise PerceptError(f"--trackers: expected some of {', '.join(mot.TRACKERS)}; found {args.trackers!r}")
    try:
        import trackeval  # noqa: F401

        if set(trackers) & set(mot.PEERS):
            import trackers as _peers  # noqa: F401
    except ImportError as exc:
        raise PerceptError(
            f"percept bench mot needs {exc.name} (TrackEval scores, `trackers` runs the peers): "
            "pip install 'percept[bench]'"
        ) from None
    settings = {
        "sequences": [str(s) for s in args.sequences],
        "trackers": trackers,
        "protocol": args.protocol,
    }
    print(f"MOT benchmark (the same detections for every tracker, TrackEval): {settings}", flush=True)
    try:
        rows, per_sequence = mot.run(args.sequences, trackers, args.protocol)
    except (FileNotFoundError, ValueError) as exc:
        raise PerceptError(str(exc)) from None
    print(mot.table(rows))
    if args.json:
        print(
            json.dumps(
                {
                    "benchmark": "mot",
                    "settings": settings,
                    "results": [asdict(r) for r in rows],
                    "per_sequence": per_sequence,
                }
            )
        )
    return 0


def _view(args: argparse.Namespace) -> int:
    from perception.bench import view
    from perception.errors import PerceptError
    from perception.viewer.server import MAX_FPS

    if args.fps > MAX_FPS:
        raise PerceptError(
            f"--fps: expected at most {MAX_FPS:g} frames/s (the viewer's limit), found {args.fps:g}"
        )

    settings = {"fps": args.fps, "seconds": args.seconds, "cameras": "2 x 640x480 rgb8 at 30 Hz + detections"}
    print(f"viewer benchmark (percept view as its own process): {settings}", flush=True)
    rows = view.run(args.fps, args.seconds)
    print(view.table(rows))
    if args.json:
        print(as_json("view", rows, settings))
    return 0


def _graph(args: argparse.Namespace) -> int:
    from perception.bench import graph
    from perception.errors import PerceptError

    scenes = [s.strip() for s in args.scenes.split(",") if s.strip()]
    if not scenes or any(s not in ("tabletop", "driving") for s in scenes):
        raise PerceptError(f"--scenes {args.scenes!r}: expected tabletop and/or driving")
    rates = args.rates
    if not 0 <= args.sim_nice <= 19:
        raise PerceptError(f"--sim-nice {args.sim_nice}: expected 0 to 19")
    settings = {
        "model": args.model,
        "size": "640x480",
        "seconds": args.seconds,
        "sim_nice": args.sim_nice,
        "cpu_count": os.cpu_count(),
    }
    print(f"graph benchmark (sim -> detector, separate processes): {settings}", flush=True)
    rows = graph.run(args.model, scenes, rates, args.seconds, args.sim_nice)
    print(graph.table(rows))
    if args.json:
        print(as_json("graph", rows, settings))
    return 0


def _detect(args: argparse.Namespace) -> int:
    from perception.bench import detect
    from perception.errors import PerceptError

    if not 0 <= args.map_confidence <= 1:  # before any frame is rendered (--confidence: Detector checks)
        raise PerceptError(f"--map-confidence: expected a score from 0 to 1, found {args.map_confidence:g}")

    settings = {
        "scene": args.scene,
        "frames": args.frames,
        "seed": args.seed,
        "threads": args.threads,
        "confidence": args.confidence,
        "map_confidence": args.map_confidence,
        "image": "640x480",
        **(
            {"small_object_zoom": args.small_object_zoom, "small_object_rows": args.small_object_rows}
            if args.small_object_zoom
            else {}
        ),
    }
    print(f"detector benchmark: {settings}", flush=True)
    rows, boxes = detect.run(
        args.model,
        args.scene,
        args.frames,
        args.seed,
        args.threads,
        args.confidence,
        args.map_confidence,
        small_object_zoom=args.small_object_zoom,
        small_object_rows=args.small_object_rows,
    )
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
