"""percept bench detect: detectors side by side (perception/bench/detect.py)."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perception.bench.machine import cpu
from perception.cli.common import comma_separated, positive_int, rows_arg, seed_arg, zoom_arg
from perception.detector.defaults import DEFAULT_CONFIDENCE, DEFAULT_CROSS_CLASS_IOU
from perception.detector.vocabulary import SHIPPED_CLASSES
from perception.errors import PerceptError
from perception.installed import MODELS_DIR, SHIPPED_MODEL, find_model, require

if TYPE_CHECKING:
    from perception.bench.detect import LabelledSet


def register(bench: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = bench.add_parser(
        "detect", help="Detectors side by side: latency per stage, frames/s, mAP."
    )
    p.add_argument(
        "--model",
        action="append",
        help=f"an ONNX file; repeat to compare (default {SHIPPED_MODEL} alone, as the other benchmarks)",
    )
    p.add_argument(
        "--suite",
        metavar="NAME",
        help="score on a named scenario suite (rendered once, then cached; see --list-suites)",
    )
    p.add_argument("--list-suites", action="store_true", help="list the scenario suites and exit")
    p.add_argument(
        "--data",
        metavar="PATH[:SPLIT]",
        help="score on a labelled set instead: a `percept dataset export` folder at its val split "
        "(:train or :all for the others), a COCO JSON file of any origin, its images' file names "
        "relative to it, or an Ultralytics data.yaml (:train, :test, :all) (your own camera's frames, "
        "labelled)",
    )
    p.add_argument("--scene", choices=["tabletop", "driving"], help="render this scene and score mAP")
    p.add_argument("--frames", type=positive_int, default=50, help="frames to run (and score) with --scene")
    p.add_argument(
        "--seed", type=seed_arg, default=1000, help="scene seed (keep it apart from training seeds)"
    )
    p.add_argument(
        "--factors",
        metavar="all|NAME,...",
        help="with --scene: also render the scene under each factor (lighting, scale, occlusion, clutter, "
        "camera_height; driving: traffic) at each of --severities, one factor at a time",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="local worker processes that render and score (default: one per core; 1: this process)",
    )
    p.add_argument(
        "--cluster",
        metavar="ADDRESS|local:N",
        help="run the rendering and scoring on a Dask distributed cluster (the cluster extra); local:N "
        "starts a LocalCluster of N workers here",
    )
    p.add_argument(
        "--cache",
        type=Path,
        metavar="DIR",
        help="where rendered suites are kept (default: $PERCEPT_CACHE or ~/.cache/percept)",
    )
    p.add_argument("--no-cache", action="store_true", help="render the frames without keeping them")
    p.add_argument("--threads", type=positive_int, default=2, help="onnxruntime threads per model")
    p.add_argument(
        "--small-object-zoom",
        type=zoom_arg,
        default=0.0,
        metavar="Z",
        help="also run each model of free input size with a second pass for small objects on the frame "
        "scaled up by Z (above 1; 0: none)",
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
        "--cross-class-iou",
        type=float,
        default=DEFAULT_CROSS_CLASS_IOU,
        help="boxes of different classes overlapping more than this are one object, the best class kept "
        f"(default {DEFAULT_CROSS_CLASS_IOU:g}, the node's; 1: per-class suppression only)",
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
        "--severities",
        type=comma_separated,
        default="1,2,3,4,5",
        help="severities of corruptions and factors, of 1-5",
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
    from perception.bench import detect, fanout, suites
    from perception.bench.class_maps import BUILT_IN, load_class_map
    from perception.bench.detection_metrics import require_pycocotools

    if args.list_suites:
        print(suites.listing())
        return 0
    args.model = args.model or [SHIPPED_MODEL]
    if not 0 <= args.map_confidence <= 1:  # before any frame is rendered (--confidence: Detector checks)
        raise PerceptError(f"--map-confidence: expected a score from 0 to 1, found {args.map_confidence:g}")
    given = [
        name
        for name, value in (("--suite", args.suite), ("--scene", args.scene), ("--data", args.data))
        if value
    ]
    if len(given) > 1:
        raise PerceptError(f"{' and '.join(given)}: expected one of them, found {len(given)}")

    if given:  # before reading or rendering any frame: the run would end at its scoring
        require_pycocotools()
    if args.out:  # likewise for the report, written at the end
        require("matplotlib", "percept bench detect --out")
        try:
            args.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PerceptError(f"--out {args.out}: cannot make the folder ({exc.strerror or exc})") from None
    if args.small_object_rows and not args.small_object_zoom:
        raise PerceptError(
            f"--small-object-rows {args.small_object_rows[0]},{args.small_object_rows[1]}: expected with "
            "--small-object-zoom (the rows its second pass covers), found no zoom"
        )
    corruptions, severities = _corruptions(args)
    suite = suites.find(args.suite) if args.suite else _scene_suite(args, severities)
    for model in args.model:  # a path that names no file ends the run before any frame is read or rendered
        if not find_model(model).is_file():
            raise PerceptError(
                f"--model {model}: no such file (a path, or the name of a model that ships: "
                f"{', '.join(sorted(p.name for p in MODELS_DIR.glob('*.onnx'))) or 'none'})"
            )
    reading = time.monotonic()
    data = _read_data(args.data) if args.data else None
    read_s = time.monotonic() - reading
    class_map = None
    if args.class_map:
        vocabulary = data.classes if data else SHIPPED_CLASSES
        class_map = load_class_map(
            args.class_map, vocabulary, f"--data {args.data}" if data else "our scenes"
        )
    workers = args.workers or fanout.default_workers()
    cache = None if args.no_cache else (args.cache or suites.default_cache())
    settings = {
        "suite": suite.name if suite else None,
        "scene": suite.scene if suite else None,
        **({"data": args.data} if data else {}),
        "frames": suite.frames if suite else len(data.images) if data else args.frames,
        "seed": suite.seed if suite else args.seed,
        **(
            {"factors": list(suite.factors), "factor_severities": list(suite.severities)}
            if suite and suite.factors
            else {}
        ),
        "class_map": args.class_map,
        "providers_available": _providers(),
        "cpu": cpu().summary(),  # int8 runs faster with VNNI, fp32 with AVX-512
        **({"corruptions": corruptions, "severities": list(severities)} if corruptions else {}),
        "threads": args.threads,
        "confidence": args.confidence,
        "map_confidence": args.map_confidence,
        "cross_class_iou": args.cross_class_iou,
        "image": f"{suite.width}x{suite.height}"
        if suite
        else _image_sizes(data.images)
        if data
        else "640x480",
        **(
            {"small_object_zoom": args.small_object_zoom, "small_object_rows": args.small_object_rows}
            if args.small_object_zoom
            else {}
        ),
    }
    print(f"detector benchmark: {settings}", flush=True)
    started = time.monotonic()
    with fanout.open_pool(workers, args.cluster) as pool:
        print(f"frames and scoring: {pool.description}", flush=True)
        outcome = detect.run(
            args.model,
            suite,
            args.frames,
            args.seed,
            args.threads,
            args.confidence,
            args.map_confidence,
            small_object_zoom=args.small_object_zoom,
            small_object_rows=args.small_object_rows,
            class_map=class_map,
            class_map_file=None if args.class_map in BUILT_IN else args.class_map,
            providers=tuple(args.providers),
            corruptions=corruptions,
            severities=severities,
            progress=_bar,
            pool=pool,
            cache=cache,
            cross_class_iou=args.cross_class_iou,
            data=data,
        )
    if data:
        outcome.phases["frames"] = round(read_s, 2)
    rows = outcome.rows
    _print_table(rows)
    reference, ratios = detect.speedups(rows)
    if ratios:
        print(
            f"{reference} against the others, p50 of the whole call in this run: "
            + ", ".join(f"{ratio:.2f}x as fast as {model}" for model, ratio in ratios)
        )
    print(detect.class_table(rows))
    if any(r.robustness for r in rows):
        print(detect.robustness_table(rows))
    if suite:
        print(
            f"scored against {outcome.boxes} ground-truth boxes in {suite.frames} clean {suite.scene} frames "
            f"(pycocotools); frames {outcome.frames_from}"
        )
    elif data:
        print(
            f"scored against {outcome.boxes} ground-truth boxes in {len(data.images)} frames of {data.source} (pycocotools)"
        )
    report: dict[str, Any] = {
        "benchmark": "detect",
        "settings": settings,
        "ground_truth_boxes": outcome.boxes,
        "frames_from": outcome.frames_from,
        "workers": pool.description,
        "models": [asdict(r) for r in rows],
        # How many times as fast the first model is as each other one (p50 of the whole call, this run).
        "speedups": [{"model": model, "times_as_fast": ratio} for model, ratio in ratios],
    }
    if args.out:
        from perception.bench.report import write

        plotting = time.monotonic()
        written = write(args.out, report, outcome.examples)
        outcome.phases["report"] = round(time.monotonic() - plotting, 2)
        print(f"report: {len(written)} files in {args.out} ({', '.join(p.name for p in written)})")
    outcome.phases["total"] = round(time.monotonic() - started, 2)
    report["phases_s"] = outcome.phases
    print("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in outcome.phases.items()))
    if args.json:
        print(json.dumps(report))
    return 0


def _read_data(given: str) -> LabelledSet:
    """--data PATH[:SPLIT]: the set's frames, their boxes, their class names and what they are."""
    from perception.bench.detect import LabelledSet, truth_vocabulary
    from perception.labelled import SPLITS, open_split

    path, _, split = given.rpartition(":")
    if split not in SPLITS or not path:
        if path and Path(path).exists() and not Path(given).exists():
            raise PerceptError(f"--data {given}: split {split!r}: expected one of {', '.join(SPLITS)}")
        path, split = given, "val"
    where = Path(path)
    declared, frames = open_split(where, split)
    images, truth = [], []
    for rgb, boxes in frames:
        images.append(rgb)
        truth.append(boxes)
    if not images:
        raise PerceptError(f"--data {given}: expected labelled frames, found none")
    source = str(where) if where.suffix.lower() == ".json" else f"{where} ({split} split)"
    return LabelledSet(images, truth, truth_vocabulary(truth, declared), source)


def _image_sizes(images: list[Any]) -> str:
    sizes = sorted({f"{i.shape[1]}x{i.shape[0]}" for i in images})
    return (
        sizes[0]
        if len(sizes) == 1
        else "mixed: " + ", ".join(sizes[:3]) + (", ..." if len(sizes) > 3 else "")
    )


def _scene_suite(args: argparse.Namespace, severities: tuple[int, ...]) -> Any:
    """An ad-hoc suite from --scene, --frames, --seed and --factors (None without a scene)."""
    if not args.scene:  # before importing the simulator: timing and --data run without the sim extra
        if args.factors:
            raise PerceptError("--factors needs --scene: the factors change a rendered scene")
        return None
    from perception.bench.suites import Suite
    from sim.variations import FACTORS

    factors: tuple[str, ...] = ()
    if args.factors:
        known = FACTORS[args.scene]
        factors = tuple(known) if args.factors == "all" else tuple(comma_separated(args.factors))
        unknown = [f for f in factors if f not in known]
        if unknown:
            raise PerceptError(
                f"--factors: {unknown[0]!r} is none of all, {', '.join(known)} (the {args.scene} scene's)"
            )
    return Suite(
        f"{args.scene}-custom", args.scene, args.frames, args.seed, factors=factors, severities=severities
    )


def _bar(stage: str) -> Any:
    """A progress bar with ETA for one stage (tqdm, on stderr), or a line now and then without it."""
    try:
        from tqdm import tqdm
    except ModuleNotFoundError:
        return lambda done, total, elapsed: (
            print(f"{stage}: {done}/{total}, {elapsed:.0f} s", flush=True) if done == total else None
        )
    bar: Any = None

    def update(done: int, total: int, elapsed: float) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=stage, unit="job", leave=True, mininterval=1.0)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def _print_table(rows: list[Any]) -> None:
    """The summary table: rich's where it is installed (the bench extra), else plain text."""
    from perception.bench import detect

    try:
        from rich.console import Console
        from rich.table import Table
    except ModuleNotFoundError:
        print(detect.table(rows))
        return
    table = Table(title="detectors side by side")
    for name in (
        "model",
        "layout",
        "input",
        "MB",
        "mem MB",
        "p50 ms",
        "p95 ms",
        "pre p50/p95",
        "infer p50/p95",
        "post p50/p95",
        "fps",
        "mAP50",
        "mAP50-95",
    ):
        table.add_column(name, justify="left" if name in ("model", "layout") else "right")
    for r in rows:
        if r.failed:
            table.add_row(r.model, f"failed: {r.failed}", *[""] * 11)
            continue
        scores = [f"{v:.3f}" if v is not None else "-" for v in (r.map50, r.map50_95)]
        table.add_row(
            r.model,
            r.layout,
            r.input_size,
            f"{r.file_mb:.1f}",
            f"{r.memory_mb:.1f}",
            f"{r.latency_p50_ms:.2f}",
            f"{r.latency_p95_ms:.2f}",
            f"{r.preprocess_p50_ms:.2f}/{r.preprocess_p95_ms:.2f}",
            f"{r.inference_p50_ms:.2f}/{r.inference_p95_ms:.2f}",
            f"{r.postprocess_p50_ms:.2f}/{r.postprocess_p95_ms:.2f}",
            f"{r.fps:.1f}",
            *scores,
        )
    Console(width=max(160, Console().width)).print(table)


def _corruptions(args: argparse.Namespace) -> tuple[list[str] | None, tuple[int, ...]]:
    from perception.bench.corruptions import CORRUPTIONS, SEVERITIES

    try:
        severities = tuple(int(s) for s in args.severities)
    except ValueError:
        raise PerceptError(
            f"--severities: expected numbers from 1 to 5, found {','.join(args.severities)}"
        ) from None
    if not severities or any(s not in SEVERITIES for s in severities):
        raise PerceptError(f"--severities: expected numbers from 1 to 5, found {','.join(args.severities)}")
    if not args.corruptions:
        return None, severities
    if not args.scene and not args.suite and not args.data:
        raise PerceptError(
            "--corruptions needs --scene, --suite or --data: corruptions are scored against the truth"
        )
    names = list(CORRUPTIONS) if args.corruptions == "all" else comma_separated(args.corruptions)
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown:
        raise PerceptError(f"--corruptions: {unknown[0]!r} is none of all, {', '.join(CORRUPTIONS)}")
    return names, severities


def _providers() -> list[str]:
    """The execution providers this onnxruntime has (`--provider` of the detector picks one)."""
    import onnxruntime

    return list(onnxruntime.get_available_providers())
