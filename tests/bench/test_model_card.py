"""The model card `percept train` writes names what the weights started from, however they were made:
random weights, a file, an earlier run's record, or the mean of several runs' weights (the shipped
model is one: docs/benchmarks.md, "A third fine-tune")."""

from __future__ import annotations

import json
from pathlib import Path

from perception.bench.held_out import HeldOut, card
from perception.installed import DEFAULT_MODEL
from perception.train.metadata import model_metadata


def _started_from(init: object) -> str:
    scores = HeldOut("m.onnx", ["cube"], 10, 0.9, 0.7, {"cube": (12, 0.9, 0.7)})
    record = {"datasets": ["mine"], "steps": 100, "minutes": 1.0, "seed": 0, "init": init}
    text = card(Path("m.onnx"), scores, None, record)
    (line,) = [line for line in text.splitlines() if line.startswith("- started from: ")]
    return line.removeprefix("- started from: ")


def test_the_card_names_each_kind_of_start():
    assert _started_from(None) == "random weights"
    assert _started_from("ft.pt") == "ft.pt"
    run = {"datasets": ["tabletop", "driving"], "steps": 5370}
    assert _started_from(run) == "a model trained on tabletop, driving for 5370 steps"
    other = {"datasets": ["driving8"], "steps": 6000}
    assert _started_from({"averaged": [other, run]}) == (
        "the mean of the weights of a model trained on driving8 for 6000 steps and "
        "a model trained on tabletop, driving for 5370 steps"
    )


def test_the_shipped_models_record_reads_as_where_it_came_from():
    shipped = json.loads(model_metadata(DEFAULT_MODEL)["training"])
    named = _started_from(shipped)
    assert "None" not in named and "trained on" in named, named
