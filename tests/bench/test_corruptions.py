"""Image corruptions for robustness sweeps: each changes the frame, more at higher severity, the same
for the same seed; bad names and severities are refused."""

from __future__ import annotations

import numpy as np
import pytest

from perception.bench.corruptions import CORRUPTIONS, corrupt, plasma_fractal

RNG = np.random.default_rng(0)
# a frame with edges and flat regions, as the simulator renders: blur and noise both show
FRAME = np.zeros((120, 160, 3), np.uint8)
FRAME[:, :80] = (60, 50, 120)
FRAME[:, 80:] = (120, 90, 140)
FRAME[40:80, 60:100] = (230, 220, 40)


def distortion(name: str, severity: int) -> float:
    return float(np.mean((corrupt(FRAME, name, severity, 3).astype(float) - FRAME) ** 2))


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_changes_the_frame_alike_for_a_seed(name):
    out = corrupt(FRAME, name, 3, 11)
    assert out.shape == FRAME.shape and out.dtype == np.uint8
    assert distortion(name, 3) > 1.0
    np.testing.assert_array_equal(out, corrupt(FRAME, name, 3, 11))


@pytest.mark.parametrize("name", ["gaussian_noise", "motion_blur", "defocus_blur", "brightness", "contrast"])
def test_a_higher_severity_distorts_more(name):
    values = [distortion(name, s) for s in range(1, 6)]
    assert values == sorted(values) and values[-1] > 1.5 * values[0], values


def test_fog_is_a_fractal_in_zero_to_one():
    cloud = plasma_fractal(64, 2.0, np.random.default_rng(1))
    assert cloud.shape == (64, 64) and cloud.min() == 0.0 and cloud.max() == 1.0
    assert 0.05 < cloud.std() < 0.5  # neither flat nor salt and pepper


def test_bad_names_and_severities_are_named():
    with pytest.raises(ValueError, match=r"corruption 'snow': expected one of gaussian_noise, "):
        corrupt(FRAME, "snow", 1, 0)
    with pytest.raises(ValueError, match="corruption severity: expected 1 to 5, found 6"):
        corrupt(FRAME, "jpeg", 6, 0)


def test_the_command_line_checks_the_sweep_before_any_work():
    from conftest import percept

    result = percept("bench", "detect", "--model", "m.onnx", "--corruptions", "all")
    assert result.returncode == 1 and "--corruptions needs --scene, --suite or --data" in result.stderr
    result = percept(
        "bench", "detect", "--model", "m.onnx", "--scene", "tabletop", "--corruptions", "fog,snow"
    )
    assert result.returncode == 1 and "--corruptions: 'snow' is none of all, gaussian_noise" in result.stderr
    result = percept(
        "bench",
        "detect",
        "--model",
        "m.onnx",
        "--scene",
        "tabletop",
        "--corruptions",
        "fog",
        "--severities",
        "0,2",
    )
    assert result.returncode == 1 and "--severities: expected numbers from 1 to 5, found 0,2" in result.stderr
