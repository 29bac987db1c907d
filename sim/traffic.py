"""Traffic on the driving scene's three-lane road, as plain numpy (no PyBullet): where every vehicle and
pedestrian is at any time.

Vehicles (the ego vehicle is one of them) follow whatever is ahead of them in their lane with the
Intelligent Driver Model (Treiber et al.), change lanes when they are held up and the gaps in the next
lane are safe (a MOBIL-like rule), and stop for pedestrians crossing their lane. Pedestrians cross the
road and wait at a lane's edge while a vehicle would reach them within a few seconds. Nothing drives
through anything: an earlier scene moved agents along fixed lines, and cars drove through the ego
vehicle (the camera), a view no real camera has.

Traffic never runs out: a vehicle that falls BEHIND_M behind the ego vehicle comes back out of sight
ahead of it, one that gets AHEAD_M ahead comes back behind it, faster than the ego vehicle, and a
pedestrian the ego vehicle has passed comes back at a kerb ahead. Each comeback is a new road user:
`generation` counts them per slot, so the scene gives it a new body and identity.

The simulation steps at a fixed STEP_S from time 0 and is extended on demand, so positions stay
functions of the seed and the time: `state(t)` interpolates between steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LANES = (-3.5, 0.0, 3.5)  # lane centres (y, metres); the ego vehicle drives in the middle one
LANE_HALF_WIDTH = 1.75
ROAD_HALF_WIDTH = 5.25
STEP_S = 0.05
EXTEND_S = 10.0  # simulated ahead in pieces of this length
CHANGE_S = 3.0  # a lane change takes this long
DECIDE_EVERY = 10  # steps between a vehicle's lane-change decisions (0.5 s)
HISTORY_S = 60.0  # how far back `state` can still be asked
BEHIND_M = 100.0  # a vehicle this far behind the ego vehicle comes back ahead of it (out of sight)...
AHEAD_M = 300.0  # ...and one this far ahead comes back behind it
WALKER_BEHIND_M = 30.0  # a pedestrian this far behind comes back ahead
COMEBACK_M = (160.0, 260.0)  # ahead of the ego vehicle: beyond the camera's 150 m far plane


@dataclass(frozen=True)
class Driver:
    """IDM parameters, shared by every vehicle (textbook values for cars in town)."""

    max_accel: float = 1.5  # m/s^2
    comfort_brake: float = 2.5  # m/s^2
    emergency_brake: float = 9.0  # m/s^2: dry asphalt's limit
    min_gap: float = 2.0  # m, bumper to bumper, when stopped
    headway_s: float = 1.2
    pedestrian_gap: float = 1.5  # m kept to a pedestrian in the lane


@dataclass(frozen=True)
class Vehicle:
    x: float  # centre at time 0
    lane: int  # index into LANES
    desired_speed: float
    length: float
    width: float


@dataclass(frozen=True)
class Walker:
    x: float
    side: int  # -1 or 1: the road side it starts on
    start_s: float  # when it steps off the kerb
    speed: float  # m/s across the road


@dataclass(frozen=True)
class TrafficState:
    """Everyone at one time: vehicles (x, y, yaw) and walkers (x, y, yaw, facing where they walk),
    and how many times each slot's road user has come back as a new one."""

    x: np.ndarray
    y: np.ndarray
    yaw: np.ndarray
    walker_x: np.ndarray
    walker_y: np.ndarray
    walker_yaw: np.ndarray
    generation: np.ndarray
    walker_generation: np.ndarray


class Traffic:
    """Vehicles (index 0 may be the ego vehicle: it never changes lanes) and walkers, stepped together."""

    def __init__(
        self,
        vehicles: list[Vehicle],
        walkers: list[Walker],
        rng: np.random.Generator,
        driver: Driver | None = None,
        keeps_lane: tuple[int, ...] = (0,),
    ) -> None:
        self.driver = driver or Driver()
        self.rng = rng
        self.keeps_lane = set(keeps_lane)
        self.length = np.array([v.length for v in vehicles])
        self.width = np.array([v.width for v in vehicles])
        self.desired = np.array([v.desired_speed for v in vehicles])
        self.x = np.array([v.x for v in vehicles], np.float64)
        self.v = self.desired.copy()
        self.lane_from = np.array([v.lane for v in vehicles], np.int64)
        self.lane_to = self.lane_from.copy()
        self.change_start = np.full(len(vehicles), -math.inf)
        self.walker_x = np.array([w.x for w in walkers], np.float64)
        self.walker_dir = -np.array([w.side for w in walkers], np.float64)  # towards the other side
        self.walker_y = np.array([w.side * (ROAD_HALF_WIDTH + 1.5) for w in walkers], np.float64)
        self.walker_start = np.array([w.start_s for w in walkers])
        self.walker_speed = np.array([w.speed for w in walkers])
        self.generation = np.zeros(len(vehicles), np.int64)  # comebacks per vehicle slot
        self.walker_generation = np.zeros(len(walkers), np.int64)
        self.steps = 0
        self._first_step = 0  # the step of the oldest one kept
        self._sizes = {(i, 0): (v.length, v.width) for i, v in enumerate(vehicles)}
        self._steps: list[TrafficState] = []  # one per STEP_S, from _first_step on
        self._record()

    # -- queries ----------------------------------------------------------------------------------------

    def state(self, t: float) -> TrafficState:
        """Where everyone is at time t. Times may only go back HISTORY_S before the latest one asked for:
        older steps are let go, so a scene can run for hours."""
        first = self._first_step * STEP_S
        if t < first:
            raise ValueError(f"traffic time: expected t >= {first:.2f} s, found {t}")
        while t > (self._first_step + len(self._steps) - 1) * STEP_S:
            for _ in range(round(EXTEND_S / STEP_S)):
                self._step()
        i = min(int(t / STEP_S) - self._first_step, len(self._steps) - 2)
        a = (t / STEP_S) - self._first_step - i
        before, after = self._steps[i], self._steps[i + 1]
        # A road user that came back between the two steps is where it came back, not half way there.
        same = before.generation == after.generation
        walker_same = before.walker_generation == after.walker_generation

        def mix(old: np.ndarray, new: np.ndarray, keep: np.ndarray) -> np.ndarray:
            mixed: np.ndarray = np.where(keep, (1 - a) * old + a * new, new)
            return mixed

        now = TrafficState(
            x=mix(before.x, after.x, same),
            y=mix(before.y, after.y, same),
            yaw=mix(before.yaw, after.yaw, same),
            walker_x=after.walker_x,
            walker_y=mix(before.walker_y, after.walker_y, walker_same),
            walker_yaw=after.walker_yaw,
            generation=after.generation,
            walker_generation=after.walker_generation,
        )
        drop = max(0, i - round(HISTORY_S / STEP_S))
        if drop > round(EXTEND_S / STEP_S):
            del self._steps[:drop]
            self._first_step += drop
            # Sizes of road users gone before the oldest step kept can no longer be asked for.
            oldest = self._steps[0].generation
            self._sizes = {key: size for key, size in self._sizes.items() if key[1] >= oldest[key[0]]}
        return now

    def size(self, slot: int, generation: int) -> tuple[float, float]:
        """Length and width of the vehicle in a slot, in a generation (each comeback is a new one)."""
        if (slot, generation) not in self._sizes:
            raise ValueError(
                f"traffic vehicle size: expected a slot and generation seen in the last {HISTORY_S:.0f} s,"
                f" found slot {slot}, generation {generation}"
            )
        return self._sizes[(slot, generation)]

    def lateral(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Each vehicle's y and dy/dt at time t, from its lane change (a smooth step over CHANGE_S)."""
        u = np.clip((t - self.change_start) / CHANGE_S, 0.0, 1.0)
        start, end = np.take(LANES, self.lane_from), np.take(LANES, self.lane_to)
        y = start + (end - start) * u * u * (3 - 2 * u)
        dy = (end - start) * 6 * u * (1 - u) / CHANGE_S
        return y, dy

    # -- simulation -------------------------------------------------------------------------------------

    def _record(self) -> None:
        y, dy = self.lateral(self.steps * STEP_S)
        self._steps.append(
            TrafficState(
                x=self.x.copy(),
                y=y,
                yaw=np.arctan2(dy, np.maximum(self.v, 1.0)),
                walker_x=self.walker_x.copy(),
                walker_y=self.walker_y.copy(),
                walker_yaw=self.walker_dir * math.pi / 2,
                generation=self.generation.copy(),
                walker_generation=self.walker_generation.copy(),
            )
        )

    def _leader(self, i: int, y: np.ndarray, lane_y: np.ndarray) -> tuple[float, float]:
        """The bumper gap from vehicle i to what is ahead of it in its path, and that thing's speed (inf
        and 0 where nothing is). Its path is its current y and, while it changes lanes, its target lane.
        A pedestrian counts with its gap shortened so that the driver model stops `pedestrian_gap` short."""
        d = self.driver
        gap, speed = math.inf, 0.0
        for path_y in {float(y[i]), float(lane_y[i])}:
            ahead = (self.x > self.x[i]) & (np.abs(y - path_y) < (self.width + self.width[i]) / 2 + 0.3)
            ahead[i] = False
            if ahead.any():
                gaps = self.x[ahead] - self.x[i] - (self.length[ahead] + self.length[i]) / 2
                k = int(np.argmin(gaps))
                if gaps[k] < gap:
                    gap, speed = float(gaps[k]), float(self.v[ahead][k])
            walking = (self.walker_x > self.x[i]) & (np.abs(self.walker_y - path_y) < self.width[i] / 2 + 1.0)
            if walking.any():
                nearest = float(self.walker_x[walking].min()) - self.x[i] - self.length[i] / 2
                if nearest - d.pedestrian_gap + d.min_gap < gap:
                    gap, speed = nearest - d.pedestrian_gap + d.min_gap, 0.0
        return gap, speed

    def _idm(self, v: np.ndarray, gap: np.ndarray, lead_speed: np.ndarray) -> np.ndarray:
        d = self.driver
        wanted = d.min_gap + np.maximum(
            0.0, v * d.headway_s + v * (v - lead_speed) / (2 * math.sqrt(d.max_accel * d.comfort_brake))
        )
        free = 1 - (v / np.maximum(self.desired, 0.1)) ** 4
        interaction = np.where(np.isfinite(gap), (wanted / np.maximum(gap, 0.1)) ** 2, 0.0)
        accel: np.ndarray = np.clip(d.max_accel * (free - interaction), -d.emergency_brake, d.max_accel)
        return accel

    def _step(self) -> None:
        t = self.steps * STEP_S
        y, _ = self.lateral(t)
        lane_y = np.take(LANES, self.lane_to)
        leaders = [self._leader(i, y, lane_y) for i in range(len(self.x))]
        gap, lead_speed = np.array([g for g, _ in leaders]), np.array([s for _, s in leaders])
        if self.steps % DECIDE_EVERY == 0:
            self._change_lanes(t, y, gap, lead_speed)
        self.v = np.maximum(0.0, self.v + self._idm(self.v, gap, lead_speed) * STEP_S)
        self.x = self.x + self.v * STEP_S
        self._keep_apart(y, lane_y)
        self._walk(t)
        self._bring_back(t, y)
        self.steps += 1
        self._record()

    def _keep_apart(self, y: np.ndarray, lane_y: np.ndarray) -> None:
        """The last word over the driver model's: no vehicle ends a step inside another or a pedestrian
        (it stops short and takes the speed of what it met)."""
        for i in np.argsort(-self.x):  # front to back: a leader is final before its follower moves
            gap, lead_speed = self._leader(int(i), y, lane_y)
            if gap < 0.5:
                self.x[i] -= 0.5 - gap
                self.v[i] = min(self.v[i], lead_speed)

    def _change_lanes(self, t: float, y: np.ndarray, gap: np.ndarray, lead_speed: np.ndarray) -> None:
        """Held-up vehicles move to a neighbouring lane whose gaps are safe and which lets them go faster;
        now and then one changes lanes unprompted, where that is safe too."""
        for i in range(len(self.x)):
            if i in self.keeps_lane or self.lane_from[i] != self.lane_to[i] or self.v[i] < 3.0:
                continue
            held_up = gap[i] < 40 and lead_speed[i] < self.desired[i] - 1.5
            if not held_up and self.rng.random() > 0.01:
                continue
            crossing = (np.abs(self.walker_y) < ROAD_HALF_WIDTH + 0.5) & (
                np.abs(self.walker_x - self.x[i] - 15.0) < 25.0
            )
            if crossing.any():  # nobody swerves around a pedestrian on the road ahead
                continue
            lane = int(self.lane_to[i])
            options = [k for k in (lane - 1, lane + 1) if 0 <= k < len(LANES)]
            self.rng.shuffle(options)
            for target in options:
                ahead_gap, ahead_speed, behind_gap, behind_speed = self._gaps_in_lane(i, target, y)
                safe = ahead_gap > max(8.0, 0.8 * self.v[i]) and behind_gap > max(6.0, 1.0 * behind_speed)
                better = not held_up or ahead_gap > 40 or ahead_speed > lead_speed[i] + 1.0
                if safe and better:
                    self.lane_from[i], self.lane_to[i] = self.lane_to[i], target
                    self.change_start[i] = t
                    break

    def _gaps_in_lane(self, i: int, lane: int, y: np.ndarray) -> tuple[float, float, float, float]:
        """Bumper gaps ahead of and behind vehicle i in a lane (vehicles at y, or moving into it), and
        the speeds of the vehicles there."""
        there = np.abs(y - LANES[lane]) < (self.width + self.width[i]) / 2 + 0.3
        there |= np.take(LANES, self.lane_to) == LANES[lane]
        there[i] = False
        offsets = self.x - self.x[i]
        bumper = np.abs(offsets) - (self.length + self.length[i]) / 2
        ahead, behind = there & (offsets >= 0), there & (offsets < 0)
        a = int(np.flatnonzero(ahead)[np.argmin(bumper[ahead])]) if ahead.any() else -1
        b = int(np.flatnonzero(behind)[np.argmin(bumper[behind])]) if behind.any() else -1
        return (
            float(bumper[a]) if a >= 0 else math.inf,
            float(self.v[a]) if a >= 0 else math.inf,
            float(bumper[b]) if b >= 0 else math.inf,
            float(self.v[b]) if b >= 0 else 0.0,
        )

    def _bring_back(self, t: float, y: np.ndarray) -> None:
        """Road users far out of sight come back as new ones where the ego vehicle is going or from
        behind it (never where they would overlap a vehicle in that lane)."""
        ego = self.x[0]
        for i in range(1, len(self.x)):
            if i in self.keeps_lane or -BEHIND_M <= self.x[i] - ego <= AHEAD_M:
                continue
            ahead = self.x[i] - ego < -BEHIND_M
            length, width = float(self.rng.uniform(3.9, 4.8)), float(self.rng.uniform(1.7, 1.95))
            for _ in range(20):
                lane = int(self.rng.integers(0, len(LANES)))
                x = ego + (self.rng.uniform(*COMEBACK_M) if ahead else -self.rng.uniform(60.0, 90.0))
                there = (np.abs(y - LANES[lane]) < LANE_HALF_WIDTH + 1.0) | (self.lane_to == lane)
                there[i] = False
                if not np.any(there & (np.abs(self.x - x) < (self.length + length) / 2 + 10.0)):
                    break
            else:
                continue  # no room this step: try again at the next
            if ahead:
                self.desired[i] = self.rng.uniform(5.0, 15.0)
            else:  # from behind only what is faster than the ego vehicle catches up
                self.desired[i] = min(self.desired[0] + self.rng.uniform(2.0, 6.0), 18.0)
            self.x[i], self.v[i] = x, self.desired[i]
            self.length[i], self.width[i] = length, width
            self.lane_from[i] = self.lane_to[i] = lane
            self.change_start[i] = -math.inf
            self.generation[i] += 1
            self._sizes[(i, int(self.generation[i]))] = (length, width)
        for k in range(len(self.walker_x)):
            if self.walker_x[k] - ego >= -WALKER_BEHIND_M:
                continue
            side = 1 if self.rng.random() < 0.5 else -1
            self.walker_x[k] = ego + self.rng.uniform(*COMEBACK_M)
            self.walker_dir[k] = -side
            self.walker_y[k] = side * (ROAD_HALF_WIDTH + 1.5)
            self.walker_start[k] = t + self.rng.uniform(0.0, 8.0)
            self.walker_speed[k] = self.rng.uniform(1.0, 1.6)
            self.walker_generation[k] += 1

    def _walk(self, t: float) -> None:
        """Pedestrians cross once their time comes, waiting at a lane's edge while a vehicle in that lane
        would reach them within 3 s (or is closer than 8 m)."""
        y, _ = self.lateral(t)
        for k in range(len(self.walker_x)):
            if t < self.walker_start[k] or abs(self.walker_y[k]) > ROAD_HALF_WIDTH + 2:
                continue
            step = self.walker_dir[k] * self.walker_speed[k] * STEP_S
            ahead_y = self.walker_y[k] + step + self.walker_dir[k] * 0.3
            entering = [
                lane
                for lane, centre in enumerate(LANES)
                if abs(ahead_y - centre) < LANE_HALF_WIDTH <= abs(self.walker_y[k] - centre)
            ]
            if entering:
                centre = LANES[entering[0]]
                # A vehicle in that lane whose rear has not passed the crossing, by its front's distance.
                coming = (
                    (np.abs(y - centre) < LANE_HALF_WIDTH) | (np.take(LANES, self.lane_to) == centre)
                ) & (self.x - self.length / 2 < self.walker_x[k] + 0.5)
                distance = self.walker_x[k] - self.x[coming] - self.length[coming] / 2
                arrival = distance / np.maximum(self.v[coming], 0.1)
                if np.any((distance < 8.0) | ((arrival < 3.0) & (self.v[coming] > 0.5))):
                    continue
            self.walker_y[k] = float(
                np.clip(self.walker_y[k] + step, -ROAD_HALF_WIDTH - 2, ROAD_HALF_WIDTH + 2)
            )
