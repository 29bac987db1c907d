"""The tabletop scene: a Franka Panda at a table, a tray beside it, and objects to pick, seeded.

Object classes (class ids are the detector's, see perception/detector/vocabulary.py): cube and cylinder (primitives with
random colours and sizes), mug, duck, teddy, soccer ball, lego brick and jenga block (pybullet_data
meshes at the scales that fit the Panda's 8 cm gripper; masses and friction from the grasping notes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
import pybullet as p
import pybullet_data

from perception.detector.vocabulary import TABLETOP_CLASSES, with_user_classes
from sim.bodies import round_outline
from sim.camera import CameraSpec
from sim.params import from_values
from sim.textures import cover_table
from sim.user_objects import UserObject, check_size, prepare, urdf_size
from sim.world import PHYSICS_HZ, World

PANDA_HOME = (0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785)
# The tray picked objects go in: a bin with upright walls, large enough for the largest scenes (15 objects
# lie in it about one deep), its far corner 73 cm from the arm's base (the Panda reaches a top-down pose
# to 78 cm). PyBullet's traybox at half scale, used before, has 21 cm of floor inside sloped 6 cm walls:
# a dozen objects heaped up in it, and a ball knocked by the next object dropped rolled up a wall and out
# onto the table, out of the arm's reach.
TRAY_POSITION = (0.26, 0.55, 0.0)  # the middle of its floor
TRAY_INSIDE = (0.36, 0.30)  # metres inside the walls, along x and y
TRAY_WALL_HEIGHT = 0.09
TRAY_WALL = 0.01  # the walls' and the floor's thickness
TRAY_COLOR = (0.45, 0.5, 0.55, 1.0)
WORKSPACE = ((0.32, 0.70), (-0.30, 0.28))  # x, y the Panda reaches top-down, clear of the tray


@dataclass(frozen=True)
class MeshClass:
    urdf: str
    scale: float
    radius: float  # footprint radius for placement, metres
    euler: tuple[float, float, float] = (0.0, 0.0, 0.0)
    mass: float | None = None


MESHES = {
    "mug": MeshClass("objects/mug.urdf", 0.7, 0.045, mass=0.3),
    "duck": MeshClass("duck_vhacd.urdf", 0.7, 0.045, euler=(math.pi / 2, 0.0, 0.0)),
    "teddy": MeshClass("teddy_vhacd.urdf", 0.7, 0.045),
    "soccerball": MeshClass("soccerball.urdf", 0.06, 0.035, mass=0.1),
    "lego": MeshClass("lego/lego.urdf", 1.5, 0.035),
    "jenga": MeshClass("jenga/jenga.urdf", 1.0, 0.045),
}


LAYOUTS = ("spread", "packed", "pile")
PILE_BOX = 0.12  # half side (m) of the box a pile is dropped into
STILL_SPEED = 0.005  # metres per second: an object slower than this is at rest
SETTLE_MOST_S = 3.0  # seconds the physics may run on for the objects to come to rest
SETTLE_CHECK_STEPS = 24  # physics steps between two looks at the objects' speeds
PACKED_SPACING = 0.8  # packed meshes stand this share of their placement radii apart: those radii are
# loose (a mesh's widest reach), so at 1.0 neighbours would stand a centimetre or two apart; the
# primitives' 0.04 is tight (a turned 3 cm cube reaches 4.2 cm) and is kept whole
PILE_DROP_STEPS = 60  # physics steps after each drop (a quarter second)
PILE_REDROPS = 3  # rounds of dropping again what a heap's slump rolled out of the workspace
LOOK_STREAM = 1  # textures=...: draws from numpy's seed [seed, 1], a stream apart from the scene's


@dataclass
class TabletopParams:
    """Scene parameters; `reset` takes any of them by name."""

    objects: int = 5
    classes: list[str] = field(default_factory=lambda: list(TABLETOP_CLASSES))
    camera_jitter: float = 0.0  # metres, uniform per axis, applied to the camera eye
    light_jitter: float = 0.0  # spread of the light direction's x and y
    table_color: list[float] | None = None  # RGBA; None: random grey-brown
    random_colors: bool = True  # primitives get random colours
    layout: str = "spread"  # spread: 1 cm apart or more; packed: touching, in the smallest square they
    # fit in; pile: dropped in a heap into a box that is then taken away, as VGN's pile scenes
    # A user's own objects (sim/user_objects.py): "PATH:NAME[:SCALE]" or mappings. Their classes join
    # the draw, unless `classes` names one of them (then `classes` alone decides).
    user_objects: list[Any] = field(default_factory=list)
    include: list[str] = field(default_factory=list)  # classes every scene holds one of, the rest drawn
    # Domain randomisation, for datasets: the share of scenes whose table wears a random procedural
    # texture (sim/textures.py), and of user meshes with no colour or texture of their own that take any
    # colour (else greys); cubes and cylinders take random colours anyway. Drawn from a stream of its
    # own, so a seeded scene's layout is the same whatever the share.
    textures: float = 0.0

    @property
    def vocabulary(self) -> tuple[str, ...]:
        """Class names by id: the shipped model's, then the user objects'."""
        return with_user_classes([o.name for o in self.user_objects])

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout: expected one of {', '.join(LAYOUTS)}, found {self.layout!r}")
        self.user_objects = [
            o if isinstance(o, UserObject) else UserObject.parse(o) for o in self.user_objects
        ]
        user_names = [o.name for o in self.user_objects]
        with_user_classes(user_names)  # names clear of ours and of each other
        if user_names and not set(user_names) & set(self.classes):
            self.classes = [*self.classes, *user_names]
        known = (*TABLETOP_CLASSES, *user_names)
        unknown = [c for c in [*self.classes, *self.include] if c not in known]
        if unknown:
            raise ValueError(f"unknown tabletop class {unknown[0]!r}; classes: {', '.join(known)}")
        if not self.classes:
            raise ValueError("classes: expected at least one tabletop class, found none")
        if self.objects < 0:
            raise ValueError(f"objects: expected a count >= 0, found {self.objects}")
        if not 0.0 <= self.textures <= 1.0:
            raise ValueError(f"textures: expected a share from 0 to 1, found {self.textures}")


@dataclass
class SceneObject:
    body: int
    class_name: str
    class_id: int
    vertices: np.ndarray  # local-frame points on the object's surface, for its silhouette


def params_from(values: dict[str, Any]) -> TabletopParams:
    return from_values(TabletopParams, values, "tabletop")


class TabletopScene:
    name = "tabletop"

    def __init__(self, world: World, params: TabletopParams, seed: int, camera: CameraSpec) -> None:
        self.world = world
        self.params = params
        self.rng = np.random.default_rng(seed)
        self.objects: list[SceneObject] = []
        self.user = {o.name: o for o in params.user_objects}
        self.user_meshes = {
            o.name: prepare(o) for o in params.user_objects if o.path.suffix.lower() != ".urdf"
        }
        world.reset()  # first: it may connect afresh (see World.reset)
        client = world.client
        table = self.world.load("plane.urdf")
        color = params.table_color or [*self.rng.uniform([0.35, 0.3, 0.25], [0.75, 0.65, 0.55]), 1.0]
        p.changeVisualShape(table, -1, rgbaColor=color, physicsClientId=client)
        self.robot = world.load("franka_panda/panda.urdf", useFixedBase=True)
        for joint, angle in enumerate(PANDA_HOME):
            p.resetJointState(self.robot, joint, angle, physicsClientId=client)
        for finger in (9, 10):
            p.resetJointState(self.robot, finger, 0.04, physicsClientId=client)
        self.tray = make_tray(client)
        look_rng = np.random.default_rng([seed, LOOK_STREAM])
        if look_rng.uniform() < params.textures:
            cover_table(client, look_rng)
        jitter = self.rng.uniform(-1, 1, 3) * params.camera_jitter
        self.camera = CameraSpec(
            width=camera.width,
            height=camera.height,
            fov_deg=camera.fov_deg,
            near=camera.near,
            far=camera.far,
            eye=tuple(np.add(camera.eye, jitter)),
            target=camera.target,
            up=camera.up,  # type: ignore[arg-type]
        )
        spread = self.rng.uniform(-1, 1, 2) * params.light_jitter
        self.light_direction = (0.5 + spread[0], -0.3 + spread[1], 1.0)
        self._place_objects()
        for obj in self.objects:  # user meshes with no look of their own: any colour, not just greys
            if self._recolourable(obj.class_name) and look_rng.uniform() < params.textures:
                colour = [*look_rng.uniform(0.05, 1.0, 3), 1.0]
                p.changeVisualShape(obj.body, -1, rgbaColor=colour, physicsClientId=client)
        world.step(PHYSICS_SETTLE_STEPS)  # let everything come to rest before the first frame
        # `objects` are those still to pick (see `refresh`); this list keeps every one the scene made.
        self.every_object = list(self.objects)
        self.settle()
        if params.layout == "pile":
            self._return_strays()

    def _recolourable(self, name: str) -> bool:
        """A user's mesh given no look (a URDF's materials are its look, kept as the file has them)."""
        user = self.user.get(name)
        return name in self.user_meshes and user is not None and user.color is None and user.texture is None

    def settle(self, most_seconds: float = SETTLE_MOST_S) -> None:
        """Run the physics on until no object moves faster than STILL_SPEED, for at most `most_seconds`.
        A ball on the edge of a heap or a packed square rolled on for seconds after the fixed settling
        steps: grasped where the camera had seen it, it was gone by the time the fingers closed."""
        client = self.world.client
        for _ in range(round(most_seconds * PHYSICS_HZ / SETTLE_CHECK_STEPS)):
            speeds = [
                np.linalg.norm(p.getBaseVelocity(o.body, physicsClientId=client)[0])
                for o in self.every_object
            ]
            if not speeds or max(speeds) < STILL_SPEED:
                return
            self.world.step(SETTLE_CHECK_STEPS)

    def refresh(self) -> None:
        """After the arm moved: `objects` becomes those physics has on the table now (see on_table). One
        dropped in the tray leaves the list; one that bounced back out of it, or was knocked off the arm,
        is on it again: where an object lies decides, not what the arm meant to do with it."""
        self.objects = [o for o in self.every_object if on_table(self.world, o.body)]

    def advance(self, steps: int) -> None:
        """Run the physics on by `steps` steps (the objects move only if pushed or grasped)."""
        self.world.step(steps)

    def _place_objects(self) -> None:
        included = self.params.include[: self.params.objects]
        drawn = [
            str(self.rng.choice(self.params.classes)) for _ in range(self.params.objects - len(included))
        ]
        choices = [*included, *drawn]
        if self.params.layout == "pile":
            self._drop_pile(choices)
            return
        radii = [self._radius(c) for c in choices]
        if self.params.layout == "spread":
            layout = self._layout(radii)
        else:
            layout = self._packed(
                [r * PACKED_SPACING if c in MESHES else r for c, r in zip(choices, radii, strict=True)]
            )
        for name, (x, y, _) in zip(choices, layout, strict=True):
            self.objects.append(self._spawn(name, x, y, float(self.rng.uniform(-math.pi, math.pi))))

    def _packed(self, radii: list[float]) -> list[tuple[float, float, float]]:
        """Positions with footprints touching or nearly (no gap wanted), in the smallest square round the
        workspace's centre that takes them: a square of a quarter more than their footprints' area, grown
        until they fit."""
        (x0, x1), (y0, y1) = WORKSPACE
        centre = ((x0 + x1) / 2, (y0 + y1) / 2)
        side = math.sqrt(sum((2 * r) ** 2 for r in radii) * 1.25)
        while side <= min(x1 - x0, y1 - y0):
            for _ in range(50):
                placed: list[tuple[float, float, float]] = []
                for radius in sorted(radii, reverse=True):
                    half = side / 2 - radius
                    for _ in range(300):
                        x, y = (
                            centre[0] + self.rng.uniform(-half, half),
                            centre[1] + self.rng.uniform(-half, half),
                        )
                        if all(math.hypot(x - px, y - py) >= radius + pr for px, py, pr in placed):
                            placed.append((x, y, radius))
                            break
                    else:
                        break
                if len(placed) == len(radii):
                    order = sorted(range(len(radii)), key=lambda i: -radii[i])  # back to the classes' order
                    return [placed[order.index(i)] for i in range(len(radii))]
            side *= 1.1
        return self._layout(radii)  # too many to pack in the workspace: spread them as far as they go

    def _drop_pile(self, choices: list[str]) -> None:
        """Drop the objects one by one, tumbling, into a box round the workspace's centre, let them
        settle, take the box away and let the heap slump."""
        client = self.world.client
        (x0, x1), (y0, y1) = WORKSPACE
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        walls = []
        for dx, dy, hx, hy in ((PILE_BOX, 0, 0.005, PILE_BOX), (-PILE_BOX, 0, 0.005, PILE_BOX),
                               (0, PILE_BOX, PILE_BOX, 0.005), (0, -PILE_BOX, PILE_BOX, 0.005)):  # fmt: skip
            shape = p.createCollisionShape(p.GEOM_BOX, halfExtents=[hx, hy, 0.1], physicsClientId=client)
            walls.append(p.createMultiBody(0, shape, -1, [cx + dx, cy + dy, 0.1], physicsClientId=client))
        for name in choices:
            x, y, tumble = self._over_the_heap()
            self.objects.append(self._spawn(name, x, y, float(tumble[2]), z=0.2, tilt=tumble[:2]))
            self.world.step(PILE_DROP_STEPS)
        self.world.step(PHYSICS_SETTLE_STEPS)
        for wall in walls:
            p.removeBody(wall, physicsClientId=client)

    def _over_the_heap(self) -> tuple[float, float, np.ndarray]:
        """Where an object is dropped onto a pile (within 5 cm of the workspace's centre) and its tumble
        (three random turns, radians)."""
        (x0, x1), (y0, y1) = WORKSPACE
        x = (x0 + x1) / 2 + self.rng.uniform(-0.05, 0.05)
        y = (y0 + y1) / 2 + self.rng.uniform(-0.05, 0.05)
        return x, y, self.rng.uniform(-math.pi, math.pi, 3)

    def _return_strays(self) -> None:
        """Drop again on the heap what its slump rolled out of the workspace, where the arm does not pick
        (pile seeds 5000 and 5004 began with a jenga block and a ball by the robot's base), and let it
        settle; at most PILE_REDROPS times. Scenes with nothing astray are left as they are."""
        client = self.world.client
        for _ in range(PILE_REDROPS):
            strays = [o.body for o in self.objects if not in_workspace(self.world, o.body)]
            if not strays:
                return
            for body in strays:
                x, y, tumble = self._over_the_heap()
                turn = p.getQuaternionFromEuler(tumble.tolist())
                p.resetBasePositionAndOrientation(body, [x, y, 0.25], turn, physicsClientId=client)
                p.resetBaseVelocity(body, [0, 0, 0], [0, 0, 0], physicsClientId=client)
                self.world.step(PILE_DROP_STEPS)
            self.settle()

    def add_objects(self, count: int) -> int:
        """Put up to `count` more objects (of the scene's classes) around the ones already there, and let
        them settle; returns how many found room (clutter sweeps)."""
        (x0, x1), (y0, y1) = WORKSPACE
        taken = [
            (*p.getBasePositionAndOrientation(o.body, physicsClientId=self.world.client)[0][:2], 0.045)
            for o in self.objects
        ]
        added = 0
        for _ in range(count):
            name = str(self.rng.choice(self.params.classes))
            radius = self._radius(name)
            for _ in range(200):
                x, y = self.rng.uniform(x0 + radius, x1 - radius), self.rng.uniform(y0 + radius, y1 - radius)
                if all(math.hypot(x - px, y - py) >= radius + pr + 0.01 for px, py, pr in taken):
                    taken.append((x, y, radius))
                    self.objects.append(self._spawn(name, x, y, float(self.rng.uniform(-math.pi, math.pi))))
                    self.every_object.append(self.objects[-1])
                    added += 1
                    break
        self.world.step(PHYSICS_SETTLE_STEPS)
        return added

    def _radius(self, name: str) -> float:
        """Footprint radius for placement (metres)."""
        if name in MESHES:
            return MESHES[name].radius
        if name in self.user_meshes:
            return max(self.user_meshes[name].radius, 0.02)
        if name in self.user:
            return 0.05  # a URDF: its size is known once loaded; a loose guess
        return 0.04

    def _layout(self, radii: list[float]) -> list[tuple[float, float, float]]:
        """Positions 1 cm apart or more, by rejection sampling; whole layouts are retried, since an
        unlucky start can leave no room for the last objects."""
        (x0, x1), (y0, y1) = WORKSPACE
        best: list[tuple[float, float, float]] = []
        for _ in range(20):
            placed: list[tuple[float, float, float]] = []
            for radius in radii:
                for _ in range(200):
                    x, y = (
                        self.rng.uniform(x0 + radius, x1 - radius),
                        self.rng.uniform(y0 + radius, y1 - radius),
                    )
                    if all(math.hypot(x - px, y - py) >= radius + pr + 0.01 for px, py, pr in placed):
                        placed.append((x, y, radius))
                        break
                else:
                    break
            if len(placed) == len(radii):
                return placed
            best = max(best, placed, key=len)
        raise ValueError(
            f"cannot place {len(radii)} objects without overlap in the {x1 - x0:.2f} x {y1 - y0:.2f} m "
            f"workspace (at most {len(best)} fitted); ask for fewer"
        )

    def _spawn(
        self, name: str, x: float, y: float, yaw: float, z: float | None = None, tilt: Any = (0.0, 0.0)
    ) -> SceneObject:
        """One object at (x, y), turned by `yaw`; by default resting on the table, or with `z` dropped
        from that height, tilted by `tilt` (roll and pitch, radians) on top of its own upright pose."""
        client = self.world.client
        if name in self.user:
            body, vertices = self._spawn_user(self.user[name], x, y, yaw, z, tilt)
        elif name in MESHES:
            mesh = MESHES[name]
            orientation = p.getQuaternionFromEuler([mesh.euler[0] + tilt[0], mesh.euler[1] + tilt[1], yaw])
            body = self.world.load(
                mesh.urdf, [x, y, 0.06 if z is None else z], orientation, globalScaling=mesh.scale
            )
            if mesh.mass is not None:
                p.changeDynamics(body, -1, mass=mesh.mass, physicsClientId=client)
            vertices = _mesh_vertices(client, body, mesh.urdf, mesh.scale)
        else:
            color = (
                [*self.rng.uniform(0.1, 1.0, 3), 1.0] if self.params.random_colors else [0.8, 0.2, 0.2, 1.0]
            )
            if name == "cube":
                half = float(self.rng.uniform(0.02, 0.03))
                shape = dict(shapeType=p.GEOM_BOX, halfExtents=[half] * 3)
                vertices = np.array(
                    [[sx, sy, sz] for sx in (-half, half) for sy in (-half, half) for sz in (-half, half)]
                )
                height = half
            else:  # cylinder
                radius, length = float(self.rng.uniform(0.02, 0.03)), float(self.rng.uniform(0.06, 0.08))
                shape = dict(shapeType=p.GEOM_CYLINDER, radius=radius, length=length)
                vertices = round_outline("cylinder", radius, length)
                height = length / 2
            visual_shape = {**shape}
            if "length" in visual_shape:
                visual_shape["length"] = shape["length"]
            collision = p.createCollisionShape(
                **{k.replace("length", "height"): v for k, v in shape.items()}, physicsClientId=client
            )
            visual = p.createVisualShape(rgbaColor=color, **shape, physicsClientId=client)
            body = p.createMultiBody(
                0.1,
                collision,
                visual,
                [x, y, height + 0.002 if z is None else z],
                p.getQuaternionFromEuler([tilt[0], tilt[1], yaw]),
                physicsClientId=client,
            )
        # Rolling friction: without it a cylinder on its side or a ball rolls on for ever on the plane
        # (metres across the floor in 20 s), where real ones stop within a few centimetres.
        p.changeDynamics(
            body,
            -1,
            lateralFriction=1.0,
            spinningFriction=0.01,
            rollingFriction=ROLLING_FRICTION,
            physicsClientId=client,
        )
        return SceneObject(body, name, self.params.vocabulary.index(name), vertices)

    def _spawn_user(
        self, obj: UserObject, x: float, y: float, yaw: float, z: float | None, tilt: Any
    ) -> tuple[int, np.ndarray]:
        """A user's object: a prepared mesh built as a body, or their URDF loaded (checked for size)."""
        client = self.world.client
        orientation = p.getQuaternionFromEuler([tilt[0], tilt[1], yaw])
        if obj.name in self.user_meshes:
            mesh = self.user_meshes[obj.name]
            color = obj.color or [*np.full(3, self.rng.uniform(0.35, 0.85)), 1.0]
            collision = p.createCollisionShape(
                p.GEOM_MESH, fileName=str(mesh.collision), physicsClientId=client
            )
            visual = p.createVisualShape(
                p.GEOM_MESH, fileName=str(mesh.visual), rgbaColor=color, physicsClientId=client
            )
            height = mesh.half_height + 0.002 if z is None else z
            body = p.createMultiBody(
                obj.mass, collision, visual, [x, y, height], orientation, physicsClientId=client
            )
            vertices = mesh.vertices
        else:
            body = self.world.load(
                str(obj.path), [x, y, 0.06 if z is None else z], orientation, globalScaling=obj.scale
            )
            check_size(obj, urdf_size(obj))
            lower, upper = p.getAABB(body, physicsClientId=client)
            p.changeDynamics(body, -1, mass=obj.mass, physicsClientId=client)
            try:
                vertices = _mesh_vertices(client, body, str(obj.path), obj.scale)
            except (ValueError, OSError):  # no visual mesh to read: the box round it
                position, turn = p.getBasePositionAndOrientation(body, physicsClientId=client)
                corners = np.array(
                    [
                        [a, b, c]
                        for a in (lower[0], upper[0])
                        for b in (lower[1], upper[1])
                        for c in (lower[2], upper[2])
                    ]
                )
                rotation = np.array(p.getMatrixFromQuaternion(turn)).reshape(3, 3)
                vertices = (corners - np.asarray(position)) @ rotation
        if obj.color is not None and obj.name not in self.user_meshes:
            p.changeVisualShape(body, -1, rgbaColor=obj.color, physicsClientId=client)
        if obj.texture is not None:
            texture = p.loadTexture(str(obj.texture), physicsClientId=client)
            p.changeVisualShape(body, -1, textureUniqueId=texture, physicsClientId=client)
        return body, vertices


PHYSICS_SETTLE_STEPS = 120
ROLLING_FRICTION = 0.002  # metres (Bullet's rolling resistance arm): hard objects on a table
ON_TABLE_MARGIN = 0.07  # metres round the workspace where an object still lies on the table to be cleared


def on_table(world: World, body: int) -> bool:
    """Whether a body lies on the table round the workspace, still to be cleared: not in the tray or
    beside it (a dropped object can bounce out of the tray), not held up by the arm. An object knocked
    further than ON_TABLE_MARGIN beyond the workspace is out of the camera's workspace too, and is not
    counted (the table is a plane without edges)."""
    (x0, x1), (y0, y1) = WORKSPACE
    x, y, z = p.getBasePositionAndOrientation(body, physicsClientId=world.client)[0]
    m = ON_TABLE_MARGIN
    return bool(x0 - m <= x <= x1 + m and y0 - m <= y <= y1 + m and z < 0.25)


def make_tray(client: int) -> int:
    """The tray (see TRAY_POSITION): one static body, a floor and four walls, its origin the middle of
    its floor on the table."""
    half_x, half_y, t, h = TRAY_INSIDE[0] / 2, TRAY_INSIDE[1] / 2, TRAY_WALL / 2, TRAY_WALL_HEIGHT / 2
    boxes = [  # (half extents, middle) in the tray's frame
        ((half_x + 2 * t, half_y + 2 * t, t), (0.0, 0.0, t)),
        ((t, half_y + 2 * t, h), (half_x + t, 0.0, h)),
        ((t, half_y + 2 * t, h), (-half_x - t, 0.0, h)),
        ((half_x, t, h), (0.0, half_y + t, h)),
        ((half_x, t, h), (0.0, -half_y - t, h)),
    ]
    extents, middles = [list(e) for e, _ in boxes], [list(m) for _, m in boxes]
    kinds = [p.GEOM_BOX] * len(boxes)
    collision = p.createCollisionShapeArray(
        kinds, halfExtents=extents, collisionFramePositions=middles, physicsClientId=client
    )
    visual = p.createVisualShapeArray(
        kinds, halfExtents=extents, visualFramePositions=middles, physicsClientId=client
    )
    tray = int(p.createMultiBody(0, collision, visual, TRAY_POSITION, physicsClientId=client))
    p.changeVisualShape(tray, -1, rgbaColor=TRAY_COLOR, physicsClientId=client)
    return tray


def in_workspace(world: World, body: int) -> bool:
    """Whether a body's middle lies over the workspace, where the arm picks."""
    (x0, x1), (y0, y1) = WORKSPACE
    x, y, _ = p.getBasePositionAndOrientation(body, physicsClientId=world.client)[0]
    return bool(x0 <= x <= x1 and y0 <= y <= y1)


def in_tray(world: World, tray: int, body: int) -> bool:
    """Whether a body lies in the tray: over its floor, below its walls' top with a margin for a heap."""
    (x0, y0, _), (x1, y1, _) = p.getAABB(tray, physicsClientId=world.client)
    x, y, z = p.getBasePositionAndOrientation(body, physicsClientId=world.client)[0]
    return bool(x0 <= x <= x1 and y0 <= y <= y1 and z < 0.2)


def _mesh_vertices(client: int, body: int, urdf: str, scaling: float, most: int = 400) -> np.ndarray:
    """The object's visual mesh vertices in its base (inertial) frame, read from the URDF's mesh file.
    (getMeshData returns nothing for some files and getVisualShapeData no file name under EGL; bounding
    boxes of meshes are about 1.4 cm loose per side, too coarse for a 3 cm brick's silhouette.)"""
    path = Path(pybullet_data.getDataPath()) / urdf
    visual = ElementTree.parse(path).getroot().find("link/visual")
    if visual is None or (mesh := visual.find("geometry/mesh")) is None:
        raise ValueError(f"{path}: expected a link with a visual mesh")
    origin = visual.find("origin")
    xyz = np.array((origin.get("xyz", "0 0 0") if origin is not None else "0 0 0").split(), np.float64)
    rpy = [float(v) for v in (origin.get("rpy", "0 0 0") if origin is not None else "0 0 0").split()]
    mesh_scale = np.array(mesh.get("scale", "1 1 1").split(), np.float64)
    with open(path.parent / mesh.get("filename", "")) as obj:
        points = np.array([line.split()[1:4] for line in obj if line.startswith("v ")], np.float64)
    if len(points) > most:  # enough for a silhouette; keep it cheap per frame
        points = points[np.linspace(0, len(points) - 1, most).astype(int)]
    visual_rotation = np.array(p.getMatrixFromQuaternion(p.getQuaternionFromEuler(rpy))).reshape(3, 3)
    in_link = (points * mesh_scale) @ visual_rotation.T * scaling + xyz * scaling
    inertial_position, inertial_orientation = p.getDynamicsInfo(body, -1, physicsClientId=client)[3:5]
    inertial_rotation = np.array(p.getMatrixFromQuaternion(inertial_orientation)).reshape(3, 3)
    return np.asarray((in_link - np.asarray(inertial_position)) @ inertial_rotation)
