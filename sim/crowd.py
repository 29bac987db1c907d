"""The crowd scene: people crossing a plaza in front of a fixed camera, as in MOTChallenge's pedestrian
sequences, with their identities as ground truth: the tracker's test beside the driving scene.

A `Crowd` (plain numpy, no PyBullet) walks every person from a point on the plaza's edge to a point
on another edge at their own speed (1.34 m/s on average, Weidmann's figure for pedestrians, 0.2 m/s
apart), steering around the others by the social force model (Helbing and Molnár 1995): each person's
velocity relaxes towards the one they want, and people closer than a couple of metres push each other
apart. Some walk beside a companion, some stand a while before they set off; everyone crosses everyone
else's path, so people pass in front of each other in the camera's view all the time. A person who
reaches their goal leaves, and someone new (a new body and identity) enters from the edge.

The camera stands still at `camera_height` (eye level to a first-floor window, as MOTChallenge's
cameras) and looks at the ground LOOK_AT_M ahead, the near half of the plaza. Positions are functions of the seed and of time alone:
the crowd steps at a fixed STEP_S, whatever the frame rate it is rendered at.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pybullet as p

from perception.detector.vocabulary import class_id
from sim.bodies import compound
from sim.camera import CameraSpec
from sim.driving import Agent
from sim.params import from_values
from sim.world import World

WALKING_SPEED = (1.34, 0.2)  # m/s: mean and spread of the speed people want (Weidmann 1993)
SPEED_RANGE = (0.7, 2.0)
RELAX_S = 0.5  # how fast a person's velocity turns to the one they want (social force model)
PUSH = (2.0, 0.3)  # m/s^2 and m: the strength and range of the push between two people
COMPANION_PUSH = 0.15  # companions push each other this much less: they walk side by side
COMPANION_GAP = 0.65  # m between companions' centres
BODY_RADIUS = 0.25  # m
STEP_S = 1 / 60  # the crowd's own time step (4 physics steps)
PLAZA = (3.0, 23.0, -10.0, 10.0)  # x from, x to, y from, y to (metres; the camera at x = 0, y = 0)
ARRIVED_M = 0.6  # a person this close to their goal leaves
LOOK_AT_M = 10.0  # the camera looks at the ground this far ahead
EPISODE_S = 20.0  # seconds per benchmark sequence: about one crossing of the plaza
CAMERA_HEIGHTS = (1.8, 8.0)  # metres: eye level to a first-floor window, the range sequences are drawn from
FIRST_UID = 100_000  # identities of people who entered later: above any PyBullet body id


@dataclass
class CrowdParams:
    people: int = 20  # on the plaza at any time
    camera_height: float = 4.0  # metres
    companions: float = 0.3  # share of people who walk beside a companion
    standing: float = 0.15  # share of people who stand a while before they walk
    light_jitter: float = 0.0

    def __post_init__(self) -> None:
        if not 1 <= self.people <= 60:
            raise ValueError(f"people: expected 1-60, found {self.people}")
        if not 1.0 <= self.camera_height <= 20.0:
            raise ValueError(f"camera_height: expected 1-20 m, found {self.camera_height}")
        for name in ("companions", "standing"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}: expected a share in [0, 1], found {getattr(self, name)}")


def params_from(values: dict[str, Any]) -> CrowdParams:
    return from_values(CrowdParams, values, "crowd")


class Crowd:
    """Where every person is: positions and velocities (N x 2, metres and m/s), and per person the goal,
    the speed they want, when they set off, their companion (-1: none) and how many people their slot
    has had before them (`generation`; each is a new identity)."""

    def __init__(self, people: int, companions: float, standing: float, rng: np.random.Generator) -> None:
        self.rng = rng
        self.time_s = 0.0
        self.position = np.zeros((people, 2))
        self.velocity = np.zeros((people, 2))
        self.goal = np.zeros((people, 2))
        self.speed = np.zeros(people)
        self.leaves_s = np.zeros(people)  # when a standing person sets off
        self.companion = np.full(people, -1)
        self.generation = np.zeros(people, np.int64)
        x0, x1, y0, y1 = PLAZA
        for i in range(people):
            if i > 0 and self.companion[i - 1] < 0 and rng.random() < companions:
                self._beside(i, i - 1)
                continue
            self.position[i] = rng.uniform([x0 + 1, y0 + 1], [x1 - 1, y1 - 1])
            self.goal[i] = self._edge_point(opposite_of=self.position[i])
            self.speed[i] = self._walking_speed()
            if rng.random() < standing:
                self.leaves_s[i] = rng.uniform(2.0, 12.0)
        self._set_off()

    def step(self, until_s: float) -> None:
        """Walk everyone on to `until_s` in steps of STEP_S."""
        while self.time_s + STEP_S <= until_s + 1e-9:
            self._step()

    def _walking_speed(self) -> float:
        return float(np.clip(self.rng.normal(*WALKING_SPEED), *SPEED_RANGE))

    def _edge_point(self, opposite_of: np.ndarray | None = None) -> np.ndarray:
        """A point on the plaza's edge; with `opposite_of`, on the edge across the plaza from it (the
        far side of the plaza's centre), so that everyone crosses the middle."""
        x0, x1, y0, y1 = PLAZA
        centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        for _ in range(50):
            side = int(self.rng.integers(4))
            t = self.rng.uniform(0.1, 0.9)
            point = [
                np.array([x0 + t * (x1 - x0), y0]),
                np.array([x0 + t * (x1 - x0), y1]),
                np.array([x0, y0 + t * (y1 - y0)]),
                np.array([x1, y0 + t * (y1 - y0)]),
            ][side]
            if opposite_of is None or np.dot(point - centre, opposite_of - centre) < 0:
                return point
        across: np.ndarray = 2 * centre - (opposite_of if opposite_of is not None else centre)
        return across

    def _beside(self, i: int, j: int) -> None:
        """Person i walks beside person j: the same goal and speed, a step to the side."""
        heading = self.goal[j] - self.position[j]
        side = np.array([-heading[1], heading[0]]) / max(float(np.linalg.norm(heading)), 1e-9)
        self.position[i] = self.position[j] + COMPANION_GAP * side
        self.goal[i] = self.goal[j] + COMPANION_GAP * side
        self.speed[i] = self.speed[j]
        self.leaves_s[i] = self.leaves_s[j]
        self.companion[i], self.companion[j] = j, i

    def _set_off(self) -> None:
        wanted = self._wanted_velocity()
        self.velocity = np.where((self.leaves_s <= self.time_s)[:, None], wanted, 0.0)

    def _wanted_velocity(self) -> np.ndarray:
        heading = self.goal - self.position
        distance = np.maximum(np.linalg.norm(heading, axis=1, keepdims=True), 1e-9)
        walking = (self.leaves_s <= self.time_s)[:, None]
        wanted: np.ndarray = np.where(walking, heading / distance * self.speed[:, None], 0.0)
        return wanted

    def _step(self) -> None:
        apart = self.position[:, None, :] - self.position[None, :, :]  # from j to i
        distance = np.linalg.norm(apart, axis=2)
        np.fill_diagonal(distance, np.inf)
        strength = PUSH[0] * np.exp((2 * BODY_RADIUS - distance) / PUSH[1])
        pairs = np.flatnonzero(self.companion >= 0)
        strength[pairs, self.companion[pairs]] *= COMPANION_PUSH
        push = (strength[:, :, None] * apart / np.maximum(distance, 1e-9)[:, :, None]).sum(axis=1)
        acceleration = (self._wanted_velocity() - self.velocity) / RELAX_S + push
        standing = self.leaves_s > self.time_s
        acceleration[standing] = 0.0  # someone standing waits; others walk around them
        self.velocity += STEP_S * acceleration
        fastest = 1.3 * np.maximum(self.speed, 0.5)[:, None]
        norm = np.maximum(np.linalg.norm(self.velocity, axis=1, keepdims=True), 1e-9)
        self.velocity *= np.minimum(1.0, fastest / norm)
        self.position += STEP_S * self.velocity
        self._keep_apart()
        self.time_s += STEP_S
        arrived = np.linalg.norm(self.goal - self.position, axis=1) < ARRIVED_M
        for i in np.flatnonzero(arrived).tolist():
            self._enter(i)

    def _keep_apart(self) -> None:
        """Two people never stand in each other: a pair closer than two body radii is moved apart along
        the line between them, each by half the overlap (the push alone lets a hurried walker through)."""
        apart = self.position[:, None, :] - self.position[None, :, :]
        distance = np.linalg.norm(apart, axis=2)
        np.fill_diagonal(distance, np.inf)
        overlap = np.maximum(2 * BODY_RADIUS - distance, 0.0)
        if overlap.any():
            shift = (overlap / 2 / np.maximum(distance, 1e-9))[:, :, None] * apart
            self.position += shift.sum(axis=1)

    def _enter(self, i: int) -> None:
        """Someone new enters from the edge in slot i (whoever walked beside its last person walks on
        alone)."""
        if self.companion[i] >= 0:
            self.companion[self.companion[i]] = -1
            self.companion[i] = -1
        self.position[i] = self._edge_point()
        self.goal[i] = self._edge_point(opposite_of=self.position[i])
        self.speed[i] = self._walking_speed()
        self.leaves_s[i] = self.time_s
        heading = self.goal[i] - self.position[i]
        self.velocity[i] = heading / max(float(np.linalg.norm(heading)), 1e-9) * self.speed[i]
        self.generation[i] += 1


class CrowdScene:
    name = "crowd"

    def __init__(self, world: World, params: CrowdParams, seed: int, camera: CameraSpec) -> None:
        self.world = world
        self.params = params
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.time_s = 0.0
        spread = self.rng.uniform(-1, 1, 2) * params.light_jitter
        self.light_direction = (0.3 + spread[0], 0.4 + spread[1], 1.0)
        self._next_uid = FIRST_UID
        world.reset()
        ground = world.load("plane.urdf", [PLAZA[1] / 2, 0.0, 0.0])
        paving = [*self.rng.uniform([0.45, 0.42, 0.38], [0.62, 0.6, 0.55]), 1]
        p.changeVisualShape(ground, -1, rgbaColor=paving, physicsClientId=world.client)
        self.crowd = Crowd(
            params.people, params.companions, params.standing, np.random.default_rng(self.rng.integers(2**32))
        )
        self.objects: list[Agent] = []
        for slot in range(params.people):
            person = self._person(self.rng)
            person.slot, person.uid = slot, person.body
            self.objects.append(person)
        self.camera = CameraSpec(
            width=camera.width,
            height=camera.height,
            fov_deg=50.0,
            near=0.1,
            far=80.0,
            eye=(0.0, 0.0, params.camera_height),
            target=(LOOK_AT_M, 0.0, 0.0),
        )
        self.advance(0)

    def advance(self, steps: int) -> None:
        """Move time on by `steps` physics steps and put everyone where they are."""
        if steps:
            self.world.step(steps)
        self.time_s = self.world.time_s
        self.crowd.step(self.time_s)
        crowd, client = self.crowd, self.world.client
        for k, person in enumerate(self.objects):
            if crowd.generation[person.slot] != person.generation:
                person = self.objects[k] = self._again(person, int(crowd.generation[person.slot]))
            vx, vy = crowd.velocity[person.slot]
            yaw = math.atan2(vy, vx) if vx * vx + vy * vy > 0.01 else 0.0
            x, y = crowd.position[person.slot]
            p.resetBasePositionAndOrientation(
                person.body, (x, y, person.z), p.getQuaternionFromEuler([0, 0, yaw]), physicsClientId=client
            )

    def _person(self, rng: np.random.Generator) -> Agent:
        """A person of their own height and build: legs, a torso, a head."""
        height = float(np.clip(rng.normal(1.72, 0.08), 1.5, 1.95))
        legs, head = 0.47 * height, 0.13 * height
        torso = height - legs - head
        girth = float(rng.uniform(0.16, 0.23))
        shirt = [*rng.uniform(0.1, 0.9, 3), 1]
        trousers = [*rng.uniform(0.05, 0.45, 3), 1]
        skin = [*(np.array([0.9, 0.72, 0.58]) * rng.uniform(0.45, 1.0)), 1]
        middle = height / 2  # the body's origin, halfway up
        body, vertices = compound(
            self.world.client,
            [
                ("cylinder", [girth, torso], [0, 0, legs + torso / 2 - middle], shirt),
                ("box", [0.07, 0.08, legs / 2], [0, girth * 0.5, legs / 2 - middle], trousers),
                ("box", [0.07, 0.08, legs / 2], [0, -girth * 0.5, legs / 2 - middle], trousers),
                ("sphere", [head / 2], [0, 0, height - head / 2 - middle], skin),
            ],
        )
        return Agent(body, "pedestrian", class_id("pedestrian"), vertices, z=middle)

    def _again(self, old: Agent, generation: int) -> Agent:
        """Someone new in `old`'s slot: a new body and identity."""
        p.removeBody(old.body, physicsClientId=self.world.client)
        new = self._person(np.random.default_rng([self.seed, old.slot, generation]))
        new.slot, new.generation, new.uid = old.slot, generation, self._next_uid
        self._next_uid += 1
        return new
