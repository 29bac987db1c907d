"""`percept bench detect --out DIR`: results.json, the plots and report.md, the same bytes for the same run."""

from __future__ import annotations

import json

from perception.bench.report import write


def a_run() -> dict:
    evaluation = {
        "classes": [
            {"name": "car", "instances": 10, "precision": 0.9, "recall": 0.8, "ap50": 0.95, "ap50_95": 0.7},
            {"name": "cone", "instances": 4, "precision": 1.0, "recall": 0.75, "ap50": 0.9, "ap50_95": 0.5},
        ],
        "not_covered": ["pedestrian"],
        "map50": 0.925,
        "map50_95": 0.6,
        "size_map50_95": {"small": 0.4, "medium": 0.8, "large": -1.0},
        "errors_dap": {
            "classification": 1.0,
            "localisation": 2.5,
            "both": 0.0,
            "duplicate": 0.1,
            "background": 0.3,
            "missed": 1.2,
        },
        "error_counts": {
            "classification": 2,
            "localisation": 3,
            "both": 0,
            "duplicate": 1,
            "background": 1,
            "missed": 2,
        },
        "cross_class_duplicates": 1,
    }
    model = {
        "model": "ours.onnx",
        "layout": "end2end",
        "input_size": "480x640",
        "latency_p50_ms": 14.0,
        "latency_p95_ms": 16.0,
        "preprocess_p50_ms": 1.0,
        "inference_p50_ms": 12.5,
        "postprocess_p50_ms": 0.5,
        "fps": 70.0,
        "map50": 0.925,
        "map50_95": 0.6,
        "evaluation": evaluation,
        "failed": "",
        "robustness": {
            "metric": "mAP@[.5:.95]",
            "clean": 0.6,
            "severities": [1, 3, 5],
            "corruptions": {"fog": [0.4, 0.2, 0.1], "jpeg": [0.5, 0.4, 0.3]},
            "mpc": 0.3167,
            "rpc": 0.5278,
        },
    }
    failed = {"model": "broken.onnx", "failed": "model broken.onnx: no such file; give model:=PATH"}
    return {
        "benchmark": "detect",
        "settings": {"scene": "driving", "frames": 20},
        "ground_truth_boxes": 14,
        "models": [model, failed],
    }


def test_the_report_holds_the_results_the_plots_and_the_tables(tmp_path):
    written = write(tmp_path / "out", a_run())
    names = sorted(p.name for p in written)
    assert names == [
        "errors.png",
        "latency.png",
        "per_class_ap.png",
        "report.md",
        "results.json",
        "robustness.png",
    ]
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == a_run()
    for png in (tmp_path / "out").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| broken.onnx | failed: model broken.onnx: no such file" in report
    assert "| cone | 4 | 1.000 | 0.750 | 0.900 | 0.500 |" in report
    assert "Not covered (left out of the means): pedestrian" in report
    assert "P 0.600, mPC 0.317, rPC 52.8%" in report and "![" in report


def test_the_same_run_gives_the_same_files(tmp_path):
    first = {p.name: p.read_bytes() for p in write(tmp_path / "a", a_run())}
    second = {p.name: p.read_bytes() for p in write(tmp_path / "b", a_run())}
    assert first == second
