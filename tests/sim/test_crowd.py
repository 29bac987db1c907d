"""The crowd scene: people who walk like people, never through each other, and keep their identities
until they leave; rendered frames with whole-person boxes as MOTChallenge annotates them."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from sim.crowd import BODY_RADIUS, PLAZA, SPEED_RANGE, Crowd, CrowdParams, params_from


def walk(seed: int, people: int = 30, seconds: float = 60.0, every_s: float = 0.1) -> list[tuple]:
    crowd = Crowd(people, companions=0.3, standing=0.15, rng=np.random.default_rng(seed))
    states = []
    for k in range(1, round(seconds / every_s) + 1):
        crowd.step(k * every_s)
        states.append((crowd.position.copy(), crowd.velocity.copy(), crowd.generation.copy()))
    return states


def test_people_walk_at_walking_speeds_never_through_each_other_and_leave_for_new_ones():
    states = walk(5)
    closest, speeds = [], []
    for position, velocity, _ in states:
        distance = np.linalg.norm(position[:, None] - position[None], axis=2)
        np.fill_diagonal(distance, np.inf)
        closest.append(distance.min())
        speeds.append(np.linalg.norm(velocity, axis=1))
    assert min(closest) > 2 * BODY_RADIUS * 0.95  # bodies touch at most
    moving = np.concatenate(speeds)
    moving = moving[moving > 0.1]  # some stand a while
    assert 1.1 < np.median(moving) < 1.5  # Weidmann's 1.34 m/s, give or take the steering
    # Measured from where they are a tenth of a second apart (keeping apart moves people too), leaving
    # out the steps in which someone left and someone new entered in their place.
    for (before, _, gen_before), (after, _, gen_after) in itertools.pairwise(states):
        same = gen_before == gen_after
        walked = np.linalg.norm(after[same] - before[same], axis=1) / 0.1
        assert walked.max() <= 1.3 * SPEED_RANGE[1] + 0.5, walked.max()
    x0, x1, y0, y1 = PLAZA
    every = np.concatenate([p for p, _, _ in states])
    assert every[:, 0].min() > x0 - 1 and every[:, 0].max() < x1 + 1
    assert every[:, 1].min() > y0 - 1 and every[:, 1].max() < y1 + 1
    entered = states[-1][2]
    assert entered.sum() >= 30  # in a minute most have crossed and left, new people entered
    # Positions are functions of the seed and the time, whatever steps the caller takes.
    coarse, fine = walk(5, seconds=6.0, every_s=0.5), walk(5, seconds=6.0, every_s=0.1)
    np.testing.assert_allclose(coarse[-1][0], fine[-1][0])
    assert not np.allclose(walk(6, seconds=6.0)[-1][0], fine[-1][0])


def test_crowd_parameters_are_checked_by_name():
    with pytest.raises(ValueError, match="people: expected 1-60, found 0"):
        CrowdParams(people=0)
    with pytest.raises(ValueError, match="camera_height: expected 1-20 m, found 40"):
        CrowdParams(camera_height=40)
    with pytest.raises(ValueError, match="unknown crowd parameter 'cars'"):
        params_from({"cars": 3})


def test_rendered_crowd_frames_keep_identities_and_box_whole_people():
    from sim.camera import CameraSpec
    from sim.dataset import rendered_frames
    from sim.frames import Frame

    frames: list[Frame] = [
        frame for _, frame in rendered_frames("crowd", 7, list(range(12)), CameraSpec(), rate=10.0)
    ]
    assert all(set(f.class_names) == {"pedestrian"} for f in frames)
    people = [set(f.ids.tolist()) for f in frames]
    assert min(len(p) for p in people) >= 5
    # A tenth of a second apart, nearly everyone is still there under the same identity.
    for before, after in itertools.pairwise(people):
        assert len(before & after) >= 0.8 * len(before)
    hidden = 0
    for f in frames:
        assert np.all((f.visible_fraction > 0) & (f.visible_fraction <= 1))
        # The whole person's box holds the visible pixels' box, and is larger where some are hidden.
        assert np.all(f.extents[:, :2] <= f.xyxy[:, :2] + 1e-6) and np.all(
            f.extents[:, 2:] >= f.xyxy[:, 2:] - 1e-6
        )
        covered = f.visible_fraction < 0.5
        hidden += int(covered.sum())
        height = lambda b: b[:, 3] - b[:, 1]  # noqa: E731
        assert np.all(height(f.extents[covered]) >= height(f.xyxy[covered]))
    assert hidden > 0  # people pass in front of each other


def test_a_whole_persons_box_is_the_box_of_the_person_seen_when_nothing_hides_them():
    """People in the image with nothing of anyone next to them: their whole box is their visible box,
    within the rasterisation's half pixel on each side. (It stood up to 4.7 px above their heads, the
    head outlined by the rims of a cylinder round it, and 0.5 px left and up, the outline taken in K's
    pixel centres for the boxes' pixel edges.)"""
    import cv2

    from sim.camera import CameraSpec
    from sim.dataset import rendered_frames

    seen = []
    for _, f in rendered_frames("crowd", 5, [0, 7], CameraSpec(), "tiny"):
        height, width = f.mask.shape
        for i, body in enumerate(f.bodies):
            x1, y1, x2, y2 = f.xyxy[i]
            mine = f.mask == body
            around = cv2.dilate(mine.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & ~mine
            if (
                min(x1, y1) > 2
                and x2 < width - 2
                and y2 < height - 2
                and not np.isin(f.mask[around], f.bodies).any()
            ):
                seen.append(f.extents[i] - f.xyxy[i])
    assert len(seen) >= 10
    assert np.abs(seen).max() <= 0.75, np.abs(seen).max(axis=0)
