"""`percept bench detect --out DIR`: the run as files to share: `results.json` (the same object `--json`
prints), PNG plots made with matplotlib (latency by stage, AP per class, the errors as AP lost, and the
robustness curves of every model on one plot per corruption), and `report.md` that shows them with the
tables. matplotlib comes with the `bench` extra.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from perception.installed import require


def write(out: Path, report: dict[str, Any], examples: list[dict[str, Any]] | None = None) -> list[Path]:
    """Write the report of one run (the `--json` object) into `out`, with `examples` (detect.Outcome's:
    frames, truth and each model's detections) drawn; returns the files written."""
    require("matplotlib", "percept bench detect --out")
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, same pixels everywhere
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    models = [m for m in report["models"] if not m.get("failed")]
    written = [out / "results.json"]
    written[0].write_text(json.dumps(report, indent=1))
    plots: list[tuple[str, str]] = []

    if models:
        figure, axes = plt.subplots(figsize=(7, 0.6 + 0.5 * len(models)))
        names = [_short(m["model"]) for m in models]
        left = [0.0] * len(models)
        for stage, colour in (
            ("preprocess", "#8da0cb"),
            ("inference", "#fc8d62"),
            ("postprocess", "#66c2a5"),
        ):
            values = [m[f"{stage}_p50_ms"] for m in models]
            axes.barh(names, values, left=left, label=stage, color=colour)
            left = [a + b for a, b in zip(left, values, strict=True)]
        axes.set_xlabel("ms per frame (p50)")
        axes.legend(loc="lower right", fontsize=8)
        plots.append(("latency.png", "Latency by stage"))
        _save(figure, out / plots[-1][0], plt)

    scored = [m for m in models if m.get("evaluation")]
    if scored:
        classes = [c["name"] for c in scored[0]["evaluation"]["classes"]]
        for m in scored[1:]:
            classes += [c["name"] for c in m["evaluation"]["classes"] if c["name"] not in classes]
        figure, axes = plt.subplots(figsize=(max(6, 0.7 * len(classes) * len(scored)), 3.5))
        width = 0.8 / len(scored)
        for i, m in enumerate(scored):
            ap = {c["name"]: c["ap50_95"] for c in m["evaluation"]["classes"]}
            axes.bar(
                [k + i * width for k in range(len(classes))],
                [ap.get(c, 0.0) for c in classes],
                width,
                label=_short(m["model"]),
            )
        axes.set_xticks([k + 0.4 - width / 2 for k in range(len(classes))], classes, rotation=30, fontsize=8)
        axes.set_ylabel("AP50-95")
        axes.set_ylim(0, 1)
        axes.legend(fontsize=8)
        plots.append(("per_class_ap.png", "AP50-95 per class (a class a model does not cover has no bar)"))
        _save(figure, out / plots[-1][0], plt)

        errors = list(scored[0]["evaluation"]["errors_dap"])
        figure, axes = plt.subplots(figsize=(7, 3))
        width = 0.8 / len(scored)
        for i, m in enumerate(scored):
            axes.bar(
                [k + i * width for k in range(len(errors))],
                [m["evaluation"]["errors_dap"][e] for e in errors],
                width,
                label=_short(m["model"]),
            )
        axes.set_xticks([k + 0.4 - width / 2 for k in range(len(errors))], errors, fontsize=8)
        axes.set_ylabel("AP50 points lost")
        axes.legend(fontsize=8)
        plots.append(("errors.png", "Errors as the AP50 each costs (TIDE's buckets)"))
        _save(figure, out / plots[-1][0], plt)

    for m in scored:
        curves = m["evaluation"].get("pr_curves50") or {}
        if curves:
            figure, axes = plt.subplots(figsize=(5.5, 4))
            recall = [k / 100 for k in range(101)]
            for name, precision in curves.items():
                axes.plot(recall, precision, label=name, linewidth=1.2)
            axes.set_xlabel("recall")
            axes.set_ylabel("precision")
            axes.set_xlim(0, 1)
            axes.set_ylim(0, 1.02)
            axes.set_title(f"{_short(m['model'])}: precision-recall at IoU 0.5", fontsize=9)
            axes.legend(fontsize=7, loc="lower left")
            plots.append((f"pr_{_slug(m['model'])}.png", f"{_short(m['model'])}: precision-recall per class"))
            _save(figure, out / plots[-1][0], plt)
        matrix = m["evaluation"].get("confusion")
        if matrix:
            labels, counts = matrix["labels"], matrix["matrix"]
            used = [i for i in range(len(labels)) if any(counts[i]) or any(row[i] for row in counts)]
            figure, axes = plt.subplots(figsize=(1.2 + 0.5 * len(used), 1.0 + 0.45 * len(used)))
            shown = [[counts[i][j] for j in used] for i in used]
            axes.imshow(shown, cmap="Blues")
            for r, row in enumerate(shown):
                for c, value in enumerate(row):
                    if value:
                        axes.text(c, r, str(value), ha="center", va="center", fontsize=7)
            names = [labels[i] for i in used]
            axes.set_xticks(range(len(used)), names, rotation=45, ha="right", fontsize=7)
            axes.set_yticks(range(len(used)), names, fontsize=7)
            axes.set_xlabel("predicted")
            axes.set_ylabel("true")
            axes.set_title(f"{_short(m['model'])}: confusion at the confidence", fontsize=9)
            plots.append(
                (f"confusion_{_slug(m['model'])}.png", f"{_short(m['model'])}: confusion matrix (IoU 0.5)")
            )
            _save(figure, out / plots[-1][0], plt)

    robust = [m for m in models if m.get("robustness")]
    for key, severities_key, file, caption in (
        (
            "factors",
            "factor_severities",
            "robustness_factors.png",
            "rendered by the simulator, one factor at a time",
        ),
        ("corruptions", "severities", "robustness.png", "image corruptions of the clean frames"),
    ):
        having = [m for m in robust if key in m["robustness"]]
        if not having:
            continue
        names = list(having[0]["robustness"][key])
        severities = having[0]["robustness"][severities_key]
        columns = min(4, len(names))
        rows = -(-len(names) // columns)
        figure, grid = plt.subplots(
            rows, columns, figsize=(3.2 * columns, 2.6 * rows), squeeze=False, sharey=True
        )
        for index, name in enumerate(names):
            axes = grid[index // columns][index % columns]
            for m in having:
                axes.plot(
                    [0, *severities],
                    [m["robustness"]["clean"], *m["robustness"][key][name]],
                    marker="o",
                    label=_short(m["model"]),
                )
            axes.set_title(name, fontsize=9)
            axes.set_xticks([0, *severities])
            axes.set_ylim(0, 1)
        for index in range(len(names), rows * columns):
            grid[index // columns][index % columns].axis("off")
        grid[0][0].set_ylabel("mAP50-95")
        grid[0][0].legend(fontsize=7)
        plots.append((file, f"mAP50-95 against severity (0: clean), {caption}, every model on each plot"))
        _save(figure, out / plots[-1][0], plt)

    for m in models:
        if examples and m["model"] in examples[0]["models"]:
            name = f"examples_{_slug(m['model'])}.png"
            _examples_image(out / name, examples, m["model"])
            plots.append(
                (
                    name,
                    f"{_short(m['model'])} on example frames: truth green, found blue, "
                    "false positives red, misses orange",
                )
            )

    written += [out / name for name, _ in plots]
    markdown = out / "report.md"
    markdown.write_text(_markdown(report, models, plots))
    written.append(markdown)
    return written


def _markdown(report: dict[str, Any], models: list[dict[str, Any]], plots: list[tuple[str, str]]) -> str:
    settings = report["settings"]
    lines = [
        "# Detector benchmark",
        "",
        "Settings: " + ", ".join(f"{k} {v}" for k, v in settings.items()),
        f"Ground-truth boxes scored: {report.get('ground_truth_boxes', 0)}",
        "",
        "| model | layout | provider | input | MB | memory MB | p50 ms | p95 ms | pre / infer / post p50 (p95) ms | frames/s | mAP50 | mAP50-95 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in report["models"]:
        if m.get("failed"):
            lines.append(f"| {m['model']} | failed: {m['failed']} | | | | | | | | | | |")
            continue
        scores = [f"{m[k]:.3f}" if m.get(k) is not None else "-" for k in ("map50", "map50_95")]
        lines.append(
            f"| {m['model']} | {m['layout']} | {m.get('provider', '')} | {m['input_size']} | {m.get('file_mb', 0)} | {m.get('memory_mb', 0)} | "
            f"{m['latency_p50_ms']} | {m['latency_p95_ms']} | "
            + " / ".join(
                f"{m[f'{stage}_p50_ms']} ({m.get(f'{stage}_p95_ms', 0.0)})"
                for stage in ("preprocess", "inference", "postprocess")
            )
            + " | "
            f"{m['fps']} | {scores[0]} | {scores[1]} |"
        )
    for m in models:
        e = m.get("evaluation")
        if not e:
            continue
        lines += [
            "",
            f"## {m['model']}",
            "",
            "| class | instances | P | R | AP50 | AP50-95 |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {c['name']} | {c['instances']} | {c['precision']:.3f} | {c['recall']:.3f} | {c['ap50']:.3f} | {c['ap50_95']:.3f} |"
            for c in e["classes"]
        ]
        if not e["classes"]:
            lines.append("\nCovers none of the classes in these frames: not scored.")
        if e["not_covered"]:
            lines.append(f"\nNot covered (left out of the means): {', '.join(e['not_covered'])}")
        for what, key in (("visible fraction", "by_visible_fraction"), ("distance", "by_distance")):
            bands = ", ".join(f"{k} {v:.3f}" for k, v in e.get(key, {}).items() if v is not None)
            if bands:
                lines.append(f"\nmAP50 by {what}: {bands}")
        lines.append(
            "\nErrors, AP50 lost (count at the confidence): "
            + ", ".join(f"{k} {v:.2f} ({e['error_counts'][k]})" for k, v in e["errors_dap"].items())
        )
        if m.get("robustness"):
            r = m["robustness"]
            parts = [f"P {r['clean']:.3f}"]
            if "factor_mean" in r:
                parts.append(f"mean under simulator factors {r['factor_mean']:.3f}")
            if "mpc" in r:
                parts += [f"mPC {r['mpc']:.3f}", f"rPC {r['rpc']:.1%}"]
            lines.append(f"\nRobustness ({r['metric']}): " + ", ".join(parts))
            for key, severities in (("factors", "factor_severities"), ("corruptions", "severities")):
                if key in r:
                    lines += [
                        "",
                        f"| {key[:-1]} | " + " | ".join(f"severity {v}" for v in r[severities]) + " |",
                    ]
                    lines.append("|---|" + "---|" * len(r[severities]))
                    lines += [
                        f"| {n} | " + " | ".join(f"{v:.3f}" for v in values) + " |"
                        for n, values in r[key].items()
                    ]
    for name, caption in plots:
        lines += ["", f"## {caption}", "", f"![{caption}]({name})"]
    return "\n".join(lines) + "\n"


def _examples_image(path: Path, examples: list[dict[str, Any]], model: str) -> None:
    """The example frames side by side at half size, with the model's detections against the truth."""
    import cv2
    import numpy as np

    from perception.bench.detection_metrics import match_frame

    tiles = []
    for example in examples:
        image = cv2.cvtColor(example["image"], cv2.COLOR_RGB2BGR)
        xyxy, scores, names = example["models"][model]
        truth = [b for b in example["truth"] if not b.get("ignore")]
        # The evaluation's own matching (greedy by score, same class, IoU >= 0.5), in score order.
        detections, found, _ = match_frame(
            0, truth, np.asarray(xyxy).reshape(-1, 4), np.asarray(scores), names
        )
        order = np.argsort(-np.asarray(scores), kind="stable")
        for i, detection in zip(order, detections, strict=True):
            hit = detection.matched >= 0
            colour = (255, 120, 0) if hit else (0, 0, 255)  # BGR: blue found, red false positive
            x1, y1, x2, y2 = (round(float(v)) for v in xyxy[i])
            cv2.rectangle(image, (x1, y1), (x2, y2), colour, 2)
            cv2.putText(
                image,
                f"{names[i]} {scores[i]:.2f}",
                (x1, max(10, y1 - 3)),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.4,
                colour,
                1,
            )
        for box, hit in zip(truth, found, strict=True):
            x1, y1, x2, y2 = (round(float(v)) for v in box["xyxy"])
            cv2.rectangle(image, (x1, y1), (x2, y2), (0, 200, 0) if hit else (0, 140, 255), 1 if hit else 2)
            if not hit:
                cv2.putText(
                    image,
                    f"missed {box['name']}",
                    (x1, min(image.shape[0] - 3, y2 + 12)),
                    cv2.FONT_HERSHEY_SIMPLEX,
                    0.4,
                    (0, 140, 255),
                    1,
                )
        tiles.append(
            cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
        )
    cv2.imwrite(str(path), np.hstack(tiles))


def _slug(model: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(model).name.removesuffix(".onnx"))


def _short(model: str) -> str:
    return Path(model).name if len(model) > 28 else model


def _save(figure: Any, path: Path, plt: Any) -> None:
    figure.tight_layout()
    figure.savefig(
        path, dpi=110, metadata={"Software": None}
    )  # no version stamp: the same run, the same bytes
    plt.close(figure)
