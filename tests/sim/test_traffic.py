"""The driving scene's traffic model on its own (no rendering): nothing drives through anything."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from sim.driving import EGO
from sim.traffic import LANE_HALF_WIDTH, LANES, STEP_S, Traffic, Vehicle, Walker


def _random_traffic(seed: int) -> Traffic:
    """As the driving scene draws it: 5-11 cars anywhere from 15 m behind to 90 m ahead, 1-4 walkers."""
    rng = np.random.default_rng(seed)
    vehicles = [replace(EGO, desired_speed=float(rng.uniform(6, 14)))]
    for _ in range(int(rng.integers(5, 12))):
        length = float(rng.uniform(3.9, 4.8))
        for _ in range(100):
            lane, x = int(rng.integers(0, 3)), float(rng.uniform(-15, 90))
            if all(v.lane != lane or abs(v.x - x) > (v.length + length) / 2 + 4 for v in vehicles):
                break
        vehicles.append(Vehicle(x, lane, float(rng.uniform(5, 15)), length, float(rng.uniform(1.7, 1.95))))
    walkers = [
        Walker(float(rng.uniform(20, 90)), int(rng.choice([-1, 1])), float(rng.uniform(0, 8)), 1.3)
        for _ in range(int(rng.integers(1, 5)))
    ]
    return Traffic(vehicles, walkers, np.random.default_rng(seed))


@pytest.mark.parametrize("seed", range(8))
def test_no_vehicle_drives_through_another_or_a_pedestrian(seed):
    traffic = _random_traffic(seed)
    changed_lanes = False
    for t in np.arange(0.0, 30.0, 0.1):
        now = traffic.state(float(t))
        x, y, walker_x, walker_y = now.x, now.y, now.walker_x, now.walker_y
        side_by_side = np.abs(y[:, None] - y[None, :]) < (traffic.width[:, None] + traffic.width[None, :]) / 2
        apart = np.abs(x[:, None] - x[None, :]) - (traffic.length[:, None] + traffic.length[None, :]) / 2
        np.fill_diagonal(side_by_side, False)
        assert not np.any(side_by_side & (apart < 0)), f"vehicles overlap at {t:.1f} s"
        beside = np.abs(walker_y[None, :] - y[:, None]) < traffic.width[:, None] / 2
        along = np.abs(walker_x[None, :] - x[:, None]) < traffic.length[:, None] / 2
        assert not np.any(beside & along), f"a vehicle runs over a pedestrian at {t:.1f} s"
        changed_lanes |= bool(np.any(np.abs(y - np.round(y / 3.5) * 3.5) > 0.2))
    assert np.all(np.abs(y[0]) < 1e-9), "the ego vehicle keeps its lane"
    if seed == 0:
        assert changed_lanes


def test_a_slow_car_ahead_holds_the_ego_vehicle_back_at_a_safe_gap():
    slow = Vehicle(x=30.0, lane=1, desired_speed=5.0, length=4.5, width=1.8)
    traffic = Traffic(
        [replace(EGO, desired_speed=12.0), slow], [], np.random.default_rng(0), keeps_lane=(0, 1)
    )
    x, later = traffic.state(40.0).x, traffic.state(45.0).x
    assert (later[0] - x[0]) / 5.0 == pytest.approx(5.0, abs=0.1)  # it follows at the slow car's speed
    gap = x[1] - x[0] - (4.5 + EGO.length) / 2
    assert 2.0 + 5.0 * 1.0 < gap < 2.0 + 5.0 * 2.0  # IDM's stopping gap plus about 1.2 s of headway


def test_a_held_up_car_overtakes_when_the_next_lane_is_free():
    slow = Vehicle(x=30.0, lane=0, desired_speed=5.0, length=4.5, width=1.8)
    fast = Vehicle(x=10.0, lane=0, desired_speed=14.0, length=4.5, width=1.8)
    traffic = Traffic([replace(EGO, x=-200.0, desired_speed=10.0), slow, fast], [], np.random.default_rng(1))
    now = traffic.state(20.0)
    x, y = now.x, now.y
    assert x[2] > x[1]  # it passed the slow car...
    assert y[2] == pytest.approx(LANES[1])  # ...in the middle lane, the only neighbour of lane 0


def test_vehicles_slow_for_a_pedestrian_on_the_road_and_walkers_wait_for_vehicles():
    far = Walker(x=110.0, side=1, start_s=0.0, speed=1.0)  # steps into the ego's lane 4 s ahead of it
    near = Walker(x=45.0, side=-1, start_s=0.0, speed=1.3)  # would step in front of it
    traffic = Traffic([replace(EGO, desired_speed=12.0)], [far, near], np.random.default_rng(0))
    slowest, previous_x, across = np.inf, None, [False, False]
    for t in np.arange(0.0, 20.0, STEP_S):
        now = traffic.state(float(t))
        if previous_x is not None:
            slowest = min(slowest, (now.x[0] - previous_x) / STEP_S)
        previous_x = now.x[0]
        front, rear = now.x[0] + EGO.length / 2, now.x[0] - EGO.length / 2
        in_path = np.abs(now.walker_y) < EGO.width / 2 + 1.0
        assert not np.any(in_path & (front > now.walker_x) & (rear < now.walker_x)), t
        if 3.75 < t < 3.95:  # the near walker waits at the kerb of the ego's lane while it goes by
            assert now.walker_y[1] == pytest.approx(-LANE_HALF_WIDTH - 0.3, abs=0.1)
        across[0] |= bool(now.walker_y[0] < -5.0)
        across[1] |= bool(now.walker_y[1] > 5.0)
    assert slowest < 9.0  # it braked for the far walker
    assert across == [True, True] and now.x[0] > 110.0  # everyone got across or past


def test_road_users_far_out_of_sight_come_back_as_new_ones():
    slow = Vehicle(x=20.0, lane=0, desired_speed=5.0, length=4.5, width=1.8)  # the ego leaves it behind
    fast = Vehicle(x=10.0, lane=2, desired_speed=30.0, length=4.5, width=1.8)  # it leaves the ego behind
    walker = Walker(x=30.0, side=1, start_s=100.0, speed=1.3)  # stays at the kerb: passed, then ahead
    traffic = Traffic([replace(EGO, desired_speed=14.0), slow, fast], [walker], np.random.default_rng(4))
    for t in np.arange(0.0, 60.0, 0.5):
        now = traffic.state(float(t))
        ahead = now.x[1:] - now.x[0]
        assert np.all((ahead > -101.0) & (ahead < 301.0)), (t, ahead)  # never far out of sight for long
        assert now.walker_x[0] - now.x[0] > -31.0
    assert now.generation[1] >= 1 and now.generation[2] >= 1 and now.walker_generation[0] >= 1
    assert traffic.size(1, int(now.generation[1]))[0] >= 3.9  # each comeback has a size of its own


def test_a_long_drive_forgets_the_road_users_it_left_behind():
    traffic = _random_traffic(5)
    first = traffic.state(0.0).generation.copy()
    for t in np.arange(0.0, 400.0, 5.0):
        now = traffic.state(float(t))
    slot = int(np.argmax(now.generation - first))
    assert now.generation[slot] > first[slot] + 1, "the drive should see a slot come back twice"
    assert traffic.size(slot, int(now.generation[slot]))[0] >= 3.9
    with pytest.raises(
        ValueError,
        match=rf"expected a slot and generation seen in the last 60 s, found slot {slot}, generation 0",
    ):
        traffic.size(slot, 0)


def test_traffic_is_a_function_of_time_and_seed():
    a, b = _random_traffic(3), _random_traffic(3)
    late = a.state(12.34)
    b.state(3.0)
    np.testing.assert_allclose(b.state(12.34).x, late.x)
    with pytest.raises(ValueError, match=r"traffic time: expected t >= 0.00 s, found -1"):
        a.state(-1)
