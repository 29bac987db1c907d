"""Robustness sweeps rendered in the simulator: each factor really changes the frames, and only that."""

from __future__ import annotations

import numpy as np
import pytest

from sim.camera import CameraSpec
from sim.dataset import rendered_frames
from sim.variations import FACTORS, Variation

SMALL = CameraSpec(width=160, height=120)


def frame(scene: str, variation: Variation = Variation(), index: int = 1):  # noqa: B008
    return next(rendered_frames(scene, 7, [index], SMALL, variation=variation))[1]


def same_objects(a, b) -> bool:
    """The same objects in the same places (to a millimetre: clutter lets the table settle again),
    whatever the camera sees of them."""
    common = np.intersect1d(a.ids, b.ids)
    pa = {i: a.positions[k] for k, i in enumerate(a.ids)}
    pb = {i: b.positions[k] for k, i in enumerate(b.ids)}
    return len(common) > 0 and all(np.allclose(pa[i], pb[i], atol=1e-3) for i in common)


@pytest.fixture(scope="module")
def tabletop_clean():
    return frame("tabletop")


def test_lighting_changes_the_pixels_and_nothing_the_truth_holds(tabletop_clean):
    lit = frame("tabletop", Variation("lighting", 4))
    assert np.abs(lit.rgb.astype(int) - tabletop_clean.rgb).mean() > 10
    assert np.array_equal(lit.mask, tabletop_clean.mask) and np.allclose(lit.pose, tabletop_clean.pose)
    assert np.array_equal(lit.xyxy, tabletop_clean.xyxy)


def test_scale_widens_the_view_so_the_same_objects_come_out_smaller(tabletop_clean):
    wide = frame("tabletop", Variation("scale", 3))
    assert wide.K[0, 0] < 0.7 * tabletop_clean.K[0, 0]
    assert np.allclose(wide.pose, tabletop_clean.pose) and same_objects(wide, tabletop_clean)
    assert wide.pixels.sum() < 0.6 * tabletop_clean.pixels.sum()


def test_occlusion_hides_part_of_every_object_and_moves_nothing(tabletop_clean):
    mild, hard = frame("tabletop", Variation("occlusion", 1)), frame("tabletop", Variation("occlusion", 5))
    for occluded in (mild, hard):
        assert np.allclose(occluded.pose, tabletop_clean.pose) and same_objects(occluded, tabletop_clean)
    assert tabletop_clean.pixels.sum() > mild.pixels.sum() > hard.pixels.sum()
    assert hard.visible_fraction.mean() < tabletop_clean.visible_fraction.mean() - 0.2


def test_clutter_adds_objects_around_the_ones_already_there(tabletop_clean):
    busy = frame("tabletop", Variation("clutter", 3))
    assert len(busy.ids) > len(tabletop_clean.ids) + 3
    assert set(tabletop_clean.ids) <= set(busy.ids) and same_objects(busy, tabletop_clean)
    assert np.allclose(busy.pose, tabletop_clean.pose)


def test_camera_height_moves_the_camera_down_and_nothing_else(tabletop_clean):
    low = frame("tabletop", Variation("camera_height", 2))
    assert low.pose[2, 3] == pytest.approx(tabletop_clean.pose[2, 3] - 0.14, abs=1e-6)
    assert np.allclose(low.pose[:2, 3], tabletop_clean.pose[:2, 3]) and same_objects(low, tabletop_clean)


def test_driving_traffic_and_camera_height():
    clean = frame("driving", index=10)
    dense = frame("driving", Variation("traffic", 5), index=10)
    high = frame("driving", Variation("camera_height", 3), index=10)
    cars = lambda f: sum(1 for n in f.class_names if n == "car")  # noqa: E731
    assert cars(dense) > cars(clean)
    assert high.pose[2, 3] == pytest.approx(clean.pose[2, 3] + 1.5, abs=1e-6)
    assert np.allclose(high.pose[:2, 3], clean.pose[:2, 3]) and same_objects(high, clean)


@pytest.mark.parametrize(
    ("variation", "message"),
    [
        (Variation("traffic", 1), "factor: expected one of lighting, scale"),
        (Variation("lighting", 6), "severity: expected 1 to 5, found 6"),
    ],
)
def test_a_wrong_factor_or_severity_is_named(variation, message):
    with pytest.raises(ValueError, match=message):
        frame("tabletop", variation)


def test_every_scene_has_five_factors():
    assert all(len(factors) == 5 for factors in FACTORS.values())
