"""percept bench detect: detectors side by side (perception/bench/detect.py)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from perception.cli.common import comma_separated, positive_int, rows_arg
from perception.detector.defaults import DEFAULT_CONFIDENCE
from perception.errors import PerceptError


def register(bench: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = bench.add_parser(
        "detect", help="Detectors side by side: latency per stage, frames/s, mAP."
    )
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
        default=DEFAULT_CONFIDENCE,
        help="score threshold for every model while timing (the node's default)",
    )
    p.add_argument(
        "--map-confidence",
        type=float,
        default=0.001,
        help="score threshold while scoring mAP (Ultralytics' val uses 0.001: mAP needs the whole curve)",
    )
    p.add_argument(
        "--class-map",
        metavar="coco|FILE",
        help="what each model's class names mean in our scenes: the built-in coco map, or a YAML file of "
        "`model name: our name` (null: none); classes a model cannot produce are reported not covered",
    )
    p.add_argument(
        "--corruptions",
        metavar="all|NAME,...",
        help="also score each model on the frames corrupted (gaussian_noise, motion_blur, defocus_blur, jpeg, "
        "brightness, contrast, fog) at each severity: mAP per severity, mPC and rPC (Michaelis et al.)",
    )
    p.add_argument(
        "--severities", type=comma_separated, default="1,2,3,4,5", help="corruption severities, of 1-5"
    )
    p.add_argument(
        "--providers",
        type=comma_separated,
        default="cpu",
        help="onnxruntime execution providers to time each model on, comma-separated (cpu, cuda, tensorrt, "
        "openvino, coreml); one this onnxruntime lacks gets a row saying so",
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="also write results.json, PNG plots and report.md there (matplotlib, the bench extra)",
    )
    p.set_defaults(func=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    from perception.bench import detect
    from perception.bench.class_maps import load_class_map

    if not 0 <= args.map_confidence <= 1:  # before any frame is rendered (--confidence: Detector checks)
        raise PerceptError(f"--map-confidence: expected a score from 0 to 1, found {args.map_confidence:g}")

    class_map = load_class_map(args.class_map) if args.class_map else None
    corruptions, severities = _corruptions(args)
    settings = {
        "scene": args.scene,
        "class_map": args.class_map,
        "providers_available": _providers(),
        **({"corruptions": corruptions, "severities": list(severities)} if corruptions else {}),
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
        class_map=class_map,
        providers=tuple(args.providers),
        corruptions=corruptions,
        severities=severities,
        progress=lambda line: print(line, flush=True),
    )
    print(detect.table(rows))
    print(detect.class_table(rows))
    if corruptions:
        print(detect.robustness_table(rows))
    if args.scene:
        print(f"scored against {boxes} ground-truth boxes in {args.frames} {args.scene} frames (pycocotools)")
    report = {
        "benchmark": "detect",
        "settings": settings,
        "ground_truth_boxes": boxes,
        "models": [asdict(r) for r in rows],
    }
    if args.out:
        from perception.bench.report import write

        written = write(args.out, report)
        print(f"report: {len(written)} files in {args.out} ({', '.join(p.name for p in written)})")
    if args.json:
        print(json.dumps(report))
    return 0


def _corruptions(args: argparse.Namespace) -> tuple[list[str] | None, tuple[int, ...]]:
    from perception.bench.corruptions import CORRUPTIONS, SEVERITIES

    if not args.corruptions:
        return None, tuple(SEVERITIES)
    if not args.scene:
        raise PerceptError("--corruptions needs --scene: corruptions are scored against the scene's truth")
    names = list(CORRUPTIONS) if args.corruptions == "all" else comma_separated(args.corruptions)
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown:
        raise PerceptError(f"--corruptions: {unknown[0]!r} is none of all, {', '.join(CORRUPTIONS)}")
    try:
        severities = tuple(int(s) for s in args.severities)
    except ValueError:
        raise PerceptError(
            f"--severities: expected numbers from 1 to 5, found {','.join(args.severities)}"
        ) from None
    if not severities or any(s not in SEVERITIES for s in severities):
        raise PerceptError(f"--severities: expected numbers from 1 to 5, found {','.join(args.severities)}")
    return names, severities


def _providers() -> list[str]:
    """The execution providers this onnxruntime has (`--provider` of the detector picks one)."""
    import onnxruntime

    return list(onnxruntime.get_available_providers())
