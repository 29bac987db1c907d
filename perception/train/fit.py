"""Train the shipped detector on exported datasets and write it as ONNX (needs torch: the `train` extra).

AdamW with a linear warm-up and a cosine decay, an exponential moving average of the weights (the EMA is
what gets exported), crops of the full-resolution frames drawn evenly from each dataset. Everything that
varies is seeded, so a run is repeatable on the same machine and library versions.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from perception.detector.vocabulary import SHIPPED_CLASSES
from perception.errors import PerceptError
from perception.labelled import set_name
from perception.train import quantization_aware
from perception.train.data import CropSpec, Dataset, augment, load_labelled, random_crop
from perception.train.loss import detection_loss
from perception.train.metadata import model_metadata
from perception.train.model import (
    Exported,
    Network,
    grow_class_rows,
    load_exported_weights,
    restore_batch_statistics,
)
from perception.train.targets import STRIDE, encode

TIMING_STEPS = 300  # with a time budget, the steps before the speed is measured (a shorter budget overruns)
UNKNOWN_STEPS = 10**9
CALIBRATION_BATCHES = 8  # batches whose statistics an exported model's BatchNorms get back (see --init)
TIME_MARGIN = 0.95  # of the time left: a budget is a limit, not a target


@dataclass
class TrainSpec:
    datasets: list[Path]
    out: Path
    steps: int  # ignored with `minutes`: the measured speed sets it
    weights: list[float] | None = None  # each dataset's share of the crops (relative); equal by default
    minutes: float | None = None  # fit the number of steps to this much training time
    batch: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup_steps: int = 150
    ema_decay: float = 0.998
    input_hw: tuple[int, int] = (480, 640)  # of the exported model: the simulator's and most cameras' frames
    dynamic: bool = False  # export with dynamic height and width (`input_hw` is then the default)
    crop: CropSpec = field(default_factory=CropSpec)
    seed: int = 0
    threads: int = 2
    checkpoint_every: int = 500  # steps between exports of the EMA weights to `out`
    init: Path | None = None  # start from these weights (a .pt written next to an earlier run's ONNX)
    device: str = "cpu"  # "cuda" (or "cuda:N") trains on a GPU
    classes: tuple[str, ...] = SHIPPED_CLASSES  # the model's, by id: ours, then any added (--add-class)
    resume: bool = False  # go on from the last checkpoint of this `out` (its .resume.pt)
    quantization_aware: bool = False  # train as the int8 export runs (quantization_aware.py); needs init


def resume_path(out: Path) -> Path:
    """Where a run keeps what it needs to go on after an interruption: weights, EMA, optimiser, step."""
    return out.with_suffix(".resume.pt")


class Batches:
    """Random batches of (image, heatmap, boxes, weight) tensors, each crop from a dataset drawn by its share."""

    def __init__(self, datasets: list[Dataset], spec: TrainSpec) -> None:
        self.datasets, self.spec = datasets, spec
        self.rng = np.random.default_rng(spec.seed)
        shares = np.asarray(spec.weights if spec.weights else [1.0] * len(datasets), np.float64)
        self.shares = shares / shares.sum()

    def next(self) -> tuple[torch.Tensor, ...]:
        """Images come as a channels-last view (B x 3 x H x W over B x H x W x 3 memory): the layout in
        which oneDNN's convolutions train fastest on a CPU, and the one the crops are made in."""
        spec, crop = self.spec, self.spec.crop
        images = np.empty((spec.batch, crop.height, crop.width, 3), np.float32)
        heatmaps, boxes, weights = [], [], []
        for slot, which in enumerate(self.rng.choice(len(self.datasets), spec.batch, p=self.shares)):
            data = self.datasets[which]
            k = int(self.rng.integers(len(data.images)))
            image, b, c = random_crop(data.images[k], data.boxes[k], data.classes[k], crop, self.rng)
            _, b = augment(image, b, self.rng, out=images[slot])
            t = encode(b, c, (crop.height, crop.width), len(spec.classes))
            heatmaps.append(t.heatmap)
            boxes.append(t.box)
            weights.append(t.weight)
        targets = (
            torch.from_numpy(np.stack(a).astype(np.float32, copy=False)) for a in (heatmaps, boxes, weights)
        )
        return (torch.from_numpy(images).permute(0, 3, 1, 2), *targets)


def load_initial_weights(model: Network, path: Path) -> None:
    """The .pt a run wrote, or an ONNX file one exported; a file of another network is named as such."""
    expected = "the .pt a percept train run wrote or an ONNX file it exported"
    if path.suffix == ".onnx":
        try:
            load_exported_weights(model, path)
        except ValueError as exc:  # another network: the convolutions differ
            raise PerceptError(f"--init {exc}") from None  # it names the file
        except Exception:  # onnx raises protobuf's own errors for a file that is no ONNX
            raise PerceptError(f"--init {path}: cannot read it as ONNX; expected {expected}") from None
        return
    try:
        # weights_only: tensors and plain containers, never arbitrary objects, so a .pt from elsewhere
        # cannot run code as it is read (a full unpickle would).
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch raises pickle's and zipfile's errors for a file that is no .pt
        raise PerceptError(f"--init {path}: cannot read it as torch weights; expected {expected}") from None
    current = model.state_dict()
    missing = [k for k in current if k not in state]
    unexpected = [k for k in state if k not in current]
    grown = {  # the class heatmap of a model with fewer classes: its rows come first (--add-class)
        k
        for k in ("heatmap.weight", "heatmap.bias")
        if k in state
        and state[k].shape[0] < current[k].shape[0]
        and state[k].shape[1:] == current[k].shape[1:]
    }
    resized = [k for k in current if k in state and state[k].shape != current[k].shape and k not in grown]
    differences = [
        f"{len(names)} {what} (e.g. {names[0]})"
        for what, names in (("missing", missing), ("unknown", unexpected), ("of another shape", resized))
        if names
    ]
    if differences:
        raise PerceptError(f"--init {path}: weights of another network: {', '.join(differences)}")
    for key in grown:
        state[key] = grow_class_rows(state[key], current[key], key)
    model.load_state_dict(state)


def initial_classes(path: Path) -> tuple[str, ...]:
    """The class names of the weights training starts from: an ONNX file's metadata, or ours (a .pt
    keeps no names: classes it was taught are given again with --add-class)."""
    if path.suffix == ".onnx":
        props = model_metadata(path)
        if "names" in props:
            names = json.loads(props["names"])
            return tuple(names.values() if isinstance(names, dict) else names)
    return SHIPPED_CLASSES


def learning_rate(spec: TrainSpec, step: int) -> float:
    if step < spec.warmup_steps:
        return spec.lr * (step + 1) / spec.warmup_steps
    progress = (step - spec.warmup_steps) / max(1, spec.steps - spec.warmup_steps)
    return spec.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))


def steps_in_budget(step: int, elapsed_s: float, per_step_s: float, minutes: float) -> int:
    """The step count that ends a run inside its time budget: the `step`s done, and as many more as the
    time left holds at the speed measured so far (less a margin), at least one."""
    left_s = minutes * 60 - elapsed_s
    return step + max(1, int(TIME_MARGIN * left_s / per_step_s))


def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for (name, e), m in zip(ema.state_dict().items(), model.state_dict().values(), strict=True):
            if quantization_aware.is_simulation_state(name):
                continue
            if e.dtype.is_floating_point:
                e.mul_(decay).add_(m.detach(), alpha=1 - decay)
            else:
                e.copy_(m)


def train(spec: TrainSpec, log: Callable[[str], None] = print) -> dict[str, float]:
    if spec.minutes is not None:
        # Until the speed is known the schedule runs as if the run were endless: warm-up, then peak lr.
        spec = replace(spec, steps=UNKNOWN_STEPS)
    torch.manual_seed(spec.seed)
    torch.set_num_threads(spec.threads)
    # channels-last: see Batches.next (the stubs of Module.to lack the memory_format it takes)
    model = Network(len(spec.classes)).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if spec.init is not None:
        load_initial_weights(model, spec.init)
        added = spec.classes[len(initial_classes(spec.init)) :]
        log(f"starting from the weights in {spec.init}" + (f", adding {', '.join(added)}" if added else ""))
    if spec.steps == 0:  # nothing to train: export the weights as they are (e.g. again, at today's export)
        export_onnx(model.eval(), spec, minutes=0, steps=0)
        return {"minutes": 0.0, "steps": 0}
    start = time.monotonic()
    datasets = [load_labelled(folder, spec.classes) for folder in spec.datasets]
    log(
        "loaded "
        + ", ".join(
            f"{d.name}: {len(d.images)} frames, {sum(len(b) for b in d.boxes)} boxes" for d in datasets
        )
        + f" in {time.monotonic() - start:.0f} s"
    )
    device = torch.device(spec.device)
    model = model.to(device)
    batches = Batches(datasets, spec)
    saved = _resumed(spec) if spec.resume else None
    if spec.quantization_aware:
        quantization_aware.prepare(model)  # BatchNorms stay as the export folded them
        log("quantisation-aware: int8 weights and activations simulated as `percept export --int8` runs them")
    elif spec.init is not None and spec.init.suffix == ".onnx" and saved is None:
        restore_batch_statistics(model, [batches.next()[0].to(device) for _ in range(CALIBRATION_BATCHES)])
    ema = copy.deepcopy(model).eval()
    decay_params = [p for n, p in model.named_parameters() if p.ndim > 1]
    other_params = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimiser = torch.optim.AdamW(
        [
            {"params": decay_params, "weight_decay": spec.weight_decay},
            {"params": other_params, "weight_decay": 0},
        ],
        lr=spec.lr,
    )
    step, earlier_s = 0, 0.0
    if saved is not None:
        model.load_state_dict(saved["model"])
        ema.load_state_dict(saved["ema"])
        optimiser.load_state_dict(saved["optimiser"])
        step, earlier_s = int(saved["step"]), float(saved["elapsed_s"])
        spec = replace(spec, steps=int(saved["steps"]))
        batches.rng = np.random.default_rng([spec.seed, step])  # fresh crops from here, repeatably
        log(f"resuming at step {step}/{spec.steps} after {earlier_s / 60:.1f} min")
    train_start = time.monotonic() - earlier_s
    run_start, run_first_step = time.monotonic(), step
    recent: list[tuple[float, float]] = []
    timing_start, timing_first_step = run_start, step
    while step < spec.steps:
        timed = step - timing_first_step
        if (
            spec.minutes is not None
            and timed > 0
            and step >= TIMING_STEPS
            and (spec.steps == UNKNOWN_STEPS or step % spec.checkpoint_every == 0)
        ):
            # The step count is set once the speed is measured, and set again at every checkpoint from
            # the speed since the one before, as Ultralytics' `time` sets its epochs again after each
            # one: the speed drifts (a run here went from 73 to 85 crops/s, and one early measure
            # ended it 15% short of its budget).
            per_step = (time.monotonic() - timing_start) / timed
            steps = steps_in_budget(step, time.monotonic() - train_start, per_step, spec.minutes)
            if abs(steps - spec.steps) > 0.01 * spec.steps:
                log(f"{per_step:.3f} s per step: {steps} steps fit in {spec.minutes} min")
                spec = replace(spec, steps=steps)
            timing_start, timing_first_step = time.monotonic(), step
        if spec.minutes is not None and time.monotonic() - train_start >= spec.minutes * 60:
            spec = replace(spec, steps=step + 1)  # the budget is a limit: this step is the last one
        if step == run_first_step + 20:
            timing_start, timing_first_step = time.monotonic(), step  # after the first steps' allocations
        if spec.quantization_aware and step == quantization_aware.RANGE_STEPS:
            quantization_aware.freeze_ranges(model)
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(spec, step)
        image, heatmap, boxes, weight = (t.to(device, non_blocking=True) for t in batches.next())
        logits, distances = model(image)
        heat_loss, box_loss = detection_loss(logits, distances, heatmap, boxes, weight)
        loss = heat_loss + box_loss
        optimiser.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimiser.step()
        # The EMA starts fast and settles to its decay, as in YOLOX: early weights are not worth keeping.
        update_ema(ema, model, spec.ema_decay * (1 - math.exp(-(step + 1) / 500)))
        recent.append((heat_loss.item(), box_loss.item()))
        if (step + 1) % 50 == 0:
            elapsed = time.monotonic() - train_start
            per_step = (time.monotonic() - run_start) / (step + 1 - run_first_step)
            heat, box = np.mean(recent, axis=0)
            recent.clear()
            known = spec.steps != UNKNOWN_STEPS
            eta = f"  ETA {(spec.steps - step - 1) * per_step / 60:.1f} min" if known else ""
            log(
                f"step {step + 1}/{spec.steps if known else '?'}  heatmap {heat:.3f}  box {box:.3f}  "
                f"lr {learning_rate(spec, step):.2e}  {spec.batch / per_step:.1f} img/s  {elapsed / 60:.1f} min{eta}"
            )
        if (step + 1) % spec.checkpoint_every == 0 or step + 1 == spec.steps:
            export_onnx(ema, spec, minutes=(time.monotonic() - train_start) / 60, steps=step + 1)
            # The torch weights too (not shipped), so a later run can go on from them with --init.
            torch.save(exportable(ema, spec).state_dict(), spec.out.with_suffix(".pt"))
            checkpoint = {
                "model": model.state_dict(),
                "ema": ema.state_dict(),
                "optimiser": optimiser.state_dict(),
                "step": step + 1,
                "steps": spec.steps,
                "elapsed_s": time.monotonic() - train_start,
            }
            partial = resume_path(spec.out).with_suffix(".partial")
            torch.save(checkpoint, partial)
            partial.replace(resume_path(spec.out))  # a run killed while writing keeps the last whole one
            log(
                f"wrote {spec.out} and {spec.out.with_suffix('.pt').name} (EMA weights after {step + 1} steps)"
            )
        step += 1
    return {"minutes": round((time.monotonic() - train_start) / 60, 1), "steps": spec.steps}


def _resumed(spec: TrainSpec) -> dict[str, Any]:
    """The checkpoint to go on from (read without running anything in it: weights_only)."""
    path = resume_path(spec.out)
    if not path.is_file():
        raise PerceptError(
            f"--resume: no checkpoint {path} to go on from (a run writes it at each checkpoint)"
        )
    try:
        return dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception:  # pickle's and zipfile's errors for a damaged file
        raise PerceptError(f"--resume: cannot read {path} as a checkpoint of percept train") from None


def exportable(network: torch.nn.Module, spec: TrainSpec) -> torch.nn.Module:
    """A plain copy of `network` on the CPU: a quantisation-aware one with its weights rounded onto their
    int8 grid and nothing simulated left in it."""
    plain = copy.deepcopy(network).cpu().to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    if spec.quantization_aware:
        quantization_aware.to_float(plain)
    return plain  # type: ignore[no-any-return]


def export_onnx(network: torch.nn.Module, spec: TrainSpec, minutes: float, steps: int) -> None:
    """The EMA network with its decoding, as ONNX with the metadata the detector reads."""
    import onnx

    spec.out.parent.mkdir(parents=True, exist_ok=True)
    exported = Exported(exportable(network, spec).eval())
    dummy = torch.zeros(1, 3, *spec.input_hw)
    with torch.no_grad():
        torch.onnx.export(
            exported,
            (dummy,),
            str(spec.out),
            input_names=["images"],
            output_names=["detections"],
            opset_version=17,
            dynamo=False,
            # A fixed size runs 7% faster in onnxruntime (machine B); with dynamic axes any size runs
            # (the network is convolutional and its decoding reads the shapes), and `imgsz` in the
            # metadata is the detector's default.
            dynamic_axes={"images": {2: "height", 3: "width"}} if spec.dynamic else None,
        )
    model = onnx.load(str(spec.out))
    metadata = {
        "names": json.dumps(list(spec.classes)),
        "imgsz": json.dumps(list(spec.input_hw)),
        "stride": str(STRIDE),
        "layout": "end2end",
        "preprocess": "letterbox centred, pad 114, RGB / 255",
        "training": json.dumps(training_record(spec, minutes, steps)),
    }
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(spec.out))


def exported_beside(init: Path) -> Path | None:
    """The ONNX file holding `init`'s weights and their training record: `init` itself, or the file a run
    exported beside the .pt it wrote (a run writes both at every checkpoint); None for a lone .pt."""
    if init.suffix == ".onnx":
        return init
    beside = init.with_suffix(".onnx")
    return beside if beside.is_file() else None


def training_record(spec: TrainSpec, minutes: float, steps: int) -> dict[str, object]:
    """What made these weights, for the metadata: this run, and the run it started from when that
    run's export is at hand (a re-export without training keeps that run's record as it is)."""
    exported = exported_beside(spec.init) if spec.init is not None else None
    earlier = _exported_training(exported) if exported is not None else None
    if steps == 0 and earlier is not None:
        return earlier
    record: dict[str, object] = {
        "datasets": [set_name(d) for d in spec.datasets],
        "weights": spec.weights,
        "steps": steps,
        "minutes": round(minutes, 1),
        "seed": spec.seed,
    }
    if spec.init is not None:
        record["init"] = earlier if earlier is not None else spec.init.name
    if spec.quantization_aware:
        record["quantization_aware"] = True  # fine-tuned for `percept export --int8`
    return record


@functools.cache
def _exported_training(path: Path) -> dict[str, object] | None:
    """The `training` record in an exported model's metadata (read once: every checkpoint asks)."""
    props = model_metadata(path)
    return json.loads(props["training"]) if "training" in props else None
