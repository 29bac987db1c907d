"""`percept train --init`: weights from a file, read without running anything in it (needs torch, the
`train` extra; CI does not install it, so this runs where training is installed)."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch", reason="torch is the train extra")

from perception.detector.vocabulary import SHIPPED_CLASSES  # noqa: E402
from perception.errors import PerceptError  # noqa: E402
from perception.train.fit import load_initial_weights  # noqa: E402
from perception.train.model import Network  # noqa: E402


class _Payload:
    """Unpickled, it runs open(path, "w"): the file appearing is code from the .pt having run."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (self.path, "w"))


def test_a_pt_that_carries_code_is_refused_without_running_it(tmp_path, monkeypatch):
    """Issue 22, item 9: `torch.load` without weights_only unpickled whatever a .pt held: the default
    before torch 2.6, and after it wherever TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set, as here."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    ran = tmp_path / "code-ran"
    hostile = tmp_path / "weights.pt"
    model = Network(len(SHIPPED_CLASSES))
    torch.save({**model.state_dict(), "extra": _Payload(str(ran))}, hostile)
    with pytest.raises(PerceptError, match=r"--init .*weights.pt: cannot read it as torch weights"):
        load_initial_weights(model, hostile)
    assert not ran.exists()


def test_a_pt_a_run_wrote_still_loads(tmp_path):
    source, target = Network(len(SHIPPED_CLASSES)), Network(len(SHIPPED_CLASSES))
    path = tmp_path / "run.pt"
    torch.save({k: v.cpu() for k, v in source.state_dict().items()}, path)  # as fit.py saves
    load_initial_weights(target, path)
    for name, value in source.state_dict().items():
        assert torch.equal(value, target.state_dict()[name])


def test_a_pt_beside_its_export_passes_on_that_runs_record(tmp_path):
    """A run writes OUT.onnx and OUT.pt together: --init OUT.pt nests OUT.onnx's training record (it
    named the .pt alone before), and a lone .pt is named by its file."""
    import shutil

    from perception.installed import DEFAULT_MODEL
    from perception.train.fit import TrainSpec, exported_beside, training_record
    from perception.train.metadata import model_metadata

    shutil.copy(DEFAULT_MODEL, tmp_path / "run.onnx")
    torch.save(Network(len(SHIPPED_CLASSES)).state_dict(), tmp_path / "run.pt")
    torch.save(Network(len(SHIPPED_CLASSES)).state_dict(), tmp_path / "lone.pt")
    assert exported_beside(tmp_path / "run.pt") == tmp_path / "run.onnx"
    assert exported_beside(tmp_path / "lone.pt") is None
    shipped = json.loads(model_metadata(DEFAULT_MODEL)["training"])
    spec = TrainSpec([tmp_path / "data"], tmp_path / "next.onnx", 10, init=tmp_path / "run.pt")
    assert training_record(spec, 1.0, 10)["init"] == shipped
    assert training_record(spec, 0.0, 0) == shipped, "a re-export without training keeps the record"
    lone = TrainSpec([tmp_path / "data"], tmp_path / "next.onnx", 10, init=tmp_path / "lone.pt")
    assert training_record(lone, 1.0, 10)["init"] == "lone.pt"
