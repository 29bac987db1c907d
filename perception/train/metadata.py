"""An ONNX model's metadata (class names, its training record, quantisation), read without its weights'
external data and without torch: training, int8 export and model cards share it."""

from __future__ import annotations

from pathlib import Path


def model_metadata(path: str | Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
