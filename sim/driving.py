"""The driving scene: a three-lane road, an ego vehicle with a forward camera, and scripted agents.

Agents move by `sim.traffic`: cars and the ego vehicle follow the traffic ahead at their own desired
speeds, change lanes to overtake when the gaps allow, and stop for pedestrians, who cross the road when
no vehicle is about to reach them; cones stand on the shoulders. Poses are functions of time and the
seed, so a sequence is reproducible, and every agent keeps its identity for as long as it is on the
road. Objects enter and leave the view as the ego vehicle overtakes them or they overtake it, and they
occlude each other.

The road has no end: ground tiles, road pieces and lane marks that fall behind the camera move ahead
of it, road users far out of sight come back as new ones (`sim.traffic`), and cones the ego vehicle
has passed stand again further on. So a live scene runs for as long as it is left running.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pybullet as p

from perception.detector.vocabulary import class_id
from sim.bodies import compound
from sim.camera import CameraSpec
from sim.params import from_values
from sim.traffic import ROAD_HALF_WIDTH, Traffic, Vehicle, Walker
from sim.world import World

ROAD_LENGTH = 600.0  # of road built; pieces behind the camera move ahead, so the road never ends
GROUND_TILE = 200.0  # pybullet_data's plane.urdf: 200 x 200 m
BEHIND_CAMERA_M = 60.0  # a road piece this far behind the camera moves ahead
CONE_BEHIND_M = 30.0  # a cone this far behind the camera stands again further on
FIRST_UID = 100_000  # identities of road users that came back: above any PyBullet body id
CAMERA_HEIGHT = 1.4
# The road's surface, above the grass at z = 0 (at a 0.1-150 m depth range a surface 1 cm above another
# flickers into it): a tracker reading distances off boxes' bottom edges needs it as its ground_z
# (launch/driving_tracking.yaml). Pedestrians and cones stand on it; cars' bodies hover 5 cm above it
# (no wheels; their distances come out about 4% long at 20 m), left so until the detector is next
# trained: lowering them moves the frames every figure in docs/benchmarks.md was measured on.
ROAD_SURFACE_Z = 0.03
EGO = Vehicle(x=-0.9, lane=1, desired_speed=0.0, length=4.6, width=1.85)  # the camera 0.9 m ahead of
# the ego vehicle's centre (1.4 m behind its front bumper); its desired speed comes from the parameters


@dataclass
class DrivingParams:
    cars: int = 8
    pedestrians: int = 3
    cones: int = 4
    ego_speed: float = 10.0  # m/s the ego vehicle drives at when nothing holds it up
    camera_jitter: float = 0.0
    light_jitter: float = 0.0

    def __post_init__(self) -> None:
        for name in ("cars", "pedestrians", "cones"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: expected a count >= 0, found {getattr(self, name)}")
        if not 0 <= self.ego_speed <= 40:
            raise ValueError(f"ego_speed: expected 0-40 m/s, found {self.ego_speed}")


def params_from(values: dict[str, Any]) -> DrivingParams:
    return from_values(DrivingParams, values, "driving")


@dataclass
class Agent:
    body: int
    class_name: str
    class_id: int
    vertices: np.ndarray
    z: float  # height of the body's origin
    uid: int = -1  # its identity in the ground truth: PyBullet reuses a removed body's id, a scene
    # never reuses a uid (the first agents' uids are their body ids)
    slot: int = -1  # its index among the traffic's vehicles (cars) or walkers (pedestrians)
    generation: int = 0  # how many road users its slot has had before it
    x: float = 0.0  # where it stands, if it never moves (cones)
    y: float = 0.0


@dataclass
class Piece:
    """A static part of the road world that moves ahead by `period` once it is behind the camera."""

    body: int
    x: float
    y: float
    z: float
    period: float
    behind: float  # how far behind the camera its centre may fall


class DrivingScene:
    name = "driving"

    def __init__(self, world: World, params: DrivingParams, seed: int, camera: CameraSpec) -> None:
        self.world = world
        self.params = params
        self.rng = np.random.default_rng(seed)
        self.time_s = 0.0
        self.base_camera = camera
        self.camera_offset = self.rng.uniform(-1, 1, 3) * params.camera_jitter
        spread = self.rng.uniform(-1, 1, 2) * params.light_jitter
        self.light_direction = (0.3 + spread[0], 0.4 + spread[1], 1.0)
        self.objects: list[Agent] = []
        self.seed = seed
        self._next_uid = FIRST_UID
        self._pieces: list[Piece] = []
        world.reset()
        self._build_road()
        vehicles, walkers = [replace(EGO, desired_speed=params.ego_speed)], list[Walker]()
        for _ in range(params.cars):
            car, vehicle = self._car(vehicles)
            car.slot = len(vehicles)
            self.objects.append(car)
            vehicles.append(vehicle)
        for _ in range(params.pedestrians):
            pedestrian, walker = self._pedestrian()
            pedestrian.slot = len(walkers)
            self.objects.append(pedestrian)
            walkers.append(walker)
        for _ in range(params.cones):
            self.objects.append(self._cone(self.rng))
        for agent in self.objects:
            agent.uid = agent.body
        self.traffic = Traffic(vehicles, walkers, np.random.default_rng(self.rng.integers(2**32)))
        self.camera = camera
        self.advance(0)

    # -- motion -----------------------------------------------------------------------------------------

    def advance(self, steps: int) -> None:
        """Move time on by `steps` physics steps and put every agent and the camera where it belongs."""
        if steps:
            self.world.step(steps)
        self.time_s = self.world.time_s
        client = self.world.client
        now = self.traffic.state(self.time_s)
        ego_x = float(now.x[0]) - EGO.x  # the camera rides at the ego vehicle's windscreen
        for k, agent in enumerate(self.objects):
            if agent.class_name == "car":
                if now.generation[agent.slot] != agent.generation:
                    agent = self.objects[k] = self._car_again(agent, int(now.generation[agent.slot]))
                position = (now.x[agent.slot], now.y[agent.slot], agent.z)
                yaw = now.yaw[agent.slot]
            elif agent.class_name == "pedestrian":
                if now.walker_generation[agent.slot] != agent.generation:
                    agent = self.objects[k] = self._pedestrian_again(
                        agent, int(now.walker_generation[agent.slot])
                    )
                position, yaw = (
                    (now.walker_x[agent.slot], now.walker_y[agent.slot], agent.z),
                    now.walker_yaw[agent.slot],
                )
            else:
                while agent.x < ego_x - CONE_BEHIND_M:
                    agent = self.objects[k] = self._cone_again(agent, k)
                position, yaw = (agent.x, agent.y, agent.z), 0.0
            p.resetBasePositionAndOrientation(
                agent.body, position, p.getQuaternionFromEuler([0, 0, yaw]), physicsClientId=client
            )
        for piece in self._pieces:
            if piece.x < ego_x - piece.behind:
                while piece.x < ego_x - piece.behind:
                    piece.x += piece.period
                p.resetBasePositionAndOrientation(
                    piece.body, [piece.x, piece.y, piece.z], [0, 0, 0, 1], physicsClientId=client
                )
        eye = np.array([ego_x, 0.0, CAMERA_HEIGHT]) + self.camera_offset
        base = self.base_camera
        self.camera = CameraSpec(
            width=base.width,
            height=base.height,
            fov_deg=60.0,
            near=0.1,
            far=150.0,
            eye=tuple(eye),
            target=(ego_x + 30.0, eye[1], 0.8),
        )  # type: ignore[arg-type]

    # -- building ---------------------------------------------------------------------------------------

    def _build_road(self) -> None:
        client = self.world.client
        grass = [*self.rng.uniform([0.25, 0.4, 0.2], [0.4, 0.55, 0.3]), 1]
        tiles = 3  # 600 m of ground, the camera's 150 m ahead always on it
        for k in range(tiles):
            ground = self.world.load("plane.urdf", [k * GROUND_TILE, 0.0, 0.0])
            p.changeVisualShape(ground, -1, rgbaColor=grass, physicsClientId=client)
            self._piece(ground, [k * GROUND_TILE, 0.0, 0.0], tiles * GROUND_TILE, GROUND_TILE * 0.75)
        grey = float(self.rng.uniform(0.2, 0.32))
        # In 20 m pieces: a visual-only body is culled by its origin, so one 600 m box would vanish
        # whenever its centre is beyond the far plane.
        for x in np.arange(-50.0, ROAD_LENGTH - 50.0, 20.0) + 10.0:
            self._static_box(
                [10.0, ROAD_HALF_WIDTH, ROAD_SURFACE_Z], [x, 0, 0.0], [grey, grey, grey, 1], ROAD_LENGTH
            )
            for y in (-ROAD_HALF_WIDTH + 0.15, ROAD_HALF_WIDTH - 0.15):  # solid edge lines
                self._static_box([10.0, 0.08, 0.01], [x, y, 0.035], [0.95, 0.95, 0.9, 1], ROAD_LENGTH)
        dashes = np.arange(-50, ROAD_LENGTH - 50, 9.0)  # dashed lane lines: 3 m of paint every 9 m
        for y in (-1.75, 1.75):
            for x in dashes:
                self._static_box([1.5, 0.07, 0.01], [x, y, 0.035], [0.95, 0.95, 0.9, 1], 9.0 * len(dashes))

    def _piece(
        self, body: int, position: list[float], period: float, behind: float = BEHIND_CAMERA_M
    ) -> None:
        self._pieces.append(Piece(body, position[0], position[1], position[2], period, behind))

    def _static_box(
        self, half: list[float], position: list[float], color: list[float], period: float
    ) -> None:
        client = self.world.client
        visual = p.createVisualShape(p.GEOM_BOX, halfExtents=half, rgbaColor=color, physicsClientId=client)
        self._piece(int(p.createMultiBody(0, -1, visual, position, physicsClientId=client)), position, period)

    def _car(self, vehicles: list[Vehicle]) -> tuple[Agent, Vehicle]:
        length, width = float(self.rng.uniform(3.9, 4.8)), float(self.rng.uniform(1.7, 1.95))
        agent = self._car_body(length, width, self.rng)
        speed = float(self.rng.uniform(5.0, 15.0))
        for _ in range(100):  # a free place at time 0: 4 m of road between bumpers
            lane, x = int(self.rng.integers(0, 3)), float(self.rng.uniform(-15, 90))
            if all(v.lane != lane or abs(v.x - x) > (v.length + length) / 2 + 4.0 for v in vehicles):
                break
        return agent, Vehicle(x=x, lane=lane, desired_speed=speed, length=length, width=width)

    def _car_body(self, length: float, width: float, rng: np.random.Generator) -> Agent:
        color = [*rng.uniform(0.05, 0.95, 3), 1]
        body, vertices = compound(
            self.world.client,
            [
                ("box", [length / 2, width / 2, 0.45], [0, 0, 0], color),
                ("box", [length * 0.28, width / 2 - 0.08, 0.33], [-0.2, 0, 0.75], [0.15, 0.18, 0.22, 1]),
            ],
        )
        return Agent(body, "car", class_id("car"), vertices, z=0.53)

    def _again(self, old: Agent, new: Agent, generation: int) -> Agent:
        """`new` takes over `old`'s slot as a road user of its own: a new body and a new identity."""
        p.removeBody(old.body, physicsClientId=self.world.client)
        new.slot, new.generation, new.uid = old.slot, generation, self._next_uid
        self._next_uid += 1
        return new

    def _rng(self, *key: int) -> np.random.Generator:
        """Draws for a road user that came back, the same however the scene's time was stepped."""
        return np.random.default_rng([self.seed, *key])

    def _car_again(self, old: Agent, generation: int) -> Agent:
        length, width = self.traffic.size(old.slot, generation)
        return self._again(old, self._car_body(length, width, self._rng(0, old.slot, generation)), generation)

    def _pedestrian(self) -> tuple[Agent, Walker]:
        agent = self._pedestrian_body(self.rng)
        side = -1 if self.rng.random() < 0.5 else 1
        walker = Walker(
            x=float(self.rng.uniform(20, 90)),
            side=side,
            speed=float(self.rng.uniform(1.0, 1.6)),
            start_s=float(self.rng.uniform(0.0, 8.0)),
        )
        return agent, walker

    def _pedestrian_body(self, rng: np.random.Generator) -> Agent:
        shirt = [*rng.uniform(0.1, 0.9, 3), 1]
        body, vertices = compound(
            self.world.client,
            [
                ("cylinder", [0.2, 1.25], [0, 0, 0], shirt),
                ("sphere", [0.13], [0, 0, 0.78], [0.85, 0.7, 0.55, 1]),
            ],
        )
        return Agent(body, "pedestrian", class_id("pedestrian"), vertices, z=0.66)

    def _pedestrian_again(self, old: Agent, generation: int) -> Agent:
        return self._again(old, self._pedestrian_body(self._rng(1, old.slot, generation)), generation)

    def _cone(self, rng: np.random.Generator, after: float = 0.0) -> Agent:
        """A cone on a shoulder, 12-120 m down the road at first, and 150-250 m `after` a passed one."""
        body, vertices = compound(
            self.world.client,
            [
                ("box", [0.2, 0.2, 0.02], [0, 0, 0], [0.9, 0.35, 0.05, 1]),
                ("cylinder", [0.11, 0.6], [0, 0, 0.3], [1.0, 0.45, 0.05, 1]),
            ],
        )
        side = -1 if rng.random() < 0.5 else 1
        x = after + float(rng.uniform(150.0, 250.0)) if after else float(rng.uniform(12, 120))
        return Agent(body, "cone", class_id("cone"), vertices, z=0.05, x=x, y=side * (ROAD_HALF_WIDTH - 0.6))

    def _cone_again(self, old: Agent, index: int) -> Agent:
        """The cone a passed one stands for: beyond the far plane when it appears."""
        generation = old.generation + 1
        return self._again(old, self._cone(self._rng(2, index, generation), after=old.x), generation)
