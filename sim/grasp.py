"""Grasp and push execution with the Franka Panda: inverse kinematics, a parallel-jaw close, lift, hold,
place; and a straight push with the closed fingers, low over the table.

Settings measured in PyBullet 3.2.7 (shared/field-notes-grasping.md): IK on link 11 (the grasp target,
10.5 cm below the hand) with joint damping 0.01 converges to < 0.1 mm in 20 iterations; the fingers are
geared together (URDF mimic joints are ignored); 40 N finger force and friction 1.0 hold every object
of the tabletop set; a top-down grasp at yaw psi closes the fingers along (sin psi, -cos psi, 0), and a
yaw within a half turn of atan2(y, x) keeps joint 7 inside its limits.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pybullet as p

from sim.world import PHYSICS_HZ, World

GRASP_LINK = 11
FINGERS = (9, 10)
ARM_JOINTS = tuple(range(7))
MAX_OPENING = 0.08  # metres between the fingers
FINGER_FORCE = 40.0
LIFT_HEIGHT = 0.20
SUCCESS_LIFT = 0.10  # the object must rise this much ...
HOLD_S = 1.0  # ... and stay up this long
SPEED = 0.3  # metres per second along Cartesian lines
MISSED = 0.01  # metres: a move that leaves the grasp link farther than this from its pose missed it
PUSH_SPEED = 0.1  # slower while pushing: an object shoved fast slides on, or tips over
PUSH_LONGEST = 0.30  # metres: a push longer than this is a mistake, not a push
PUSH_LOWEST = 0.008  # metres above the table the fingertips may go (they would scrape it lower)
CARRY_HEIGHT = 0.30  # metres: the fingers carry an object to the tray this high, over any heap
TRAY_RELEASE_HEIGHT = 0.18  # the fingers open this high: a held object's bottom clears the 9 cm walls
# Objects are let go at nine spots over the tray (sim.tabletop.make_tray): its middle, and a grid 8 cm in
# from its outer edges (7 cm inside its walls). Each object goes to the spot farthest from those already
# in the tray: dropped all on one spot, a dozen objects heap up and the next bounces off the heap, and
# one dropped onto a ball knocks it away.
TRAY_SPOT_MARGIN = 0.08


@dataclass
class GraspOutcome:
    success: bool
    reason: str
    object_id: int = -1  # the body that rose most (the one held, on success), -1 if none
    lifted_m: float = 0.0  # how far it rose by the end of the hold
    placed: bool = False


class Panda:
    def __init__(
        self, world: World, robot: int, tray: int, on_step: Callable[[], None] | None = None
    ) -> None:
        self.world = world
        self.robot = robot
        self.tray = tray  # the body objects are placed in (its origin is its floor's middle)
        self.on_step = on_step or (lambda: None)
        client = world.client
        gear = p.createConstraint(
            robot,
            FINGERS[0],
            robot,
            FINGERS[1],
            p.JOINT_GEAR,
            [1, 0, 0],
            [0, 0, 0],
            [0, 0, 0],
            physicsClientId=client,
        )
        p.changeConstraint(gear, gearRatio=-1, erp=0.1, maxForce=50, physicsClientId=client)
        for finger in FINGERS:
            p.changeDynamics(robot, finger, lateralFriction=1.0, spinningFriction=0.1, physicsClientId=client)
        self.forces = [p.getJointInfo(robot, j, physicsClientId=client)[10] for j in ARM_JOINTS]
        # The arm's posture at the start (its home): a move that misses its pose starts again from it.
        self.home = [p.getJointState(robot, j, physicsClientId=client)[0] for j in ARM_JOINTS]
        self.fingers = 0.04

    # -- motion primitives ----------------------------------------------------------------------------

    def hand_pose(self) -> tuple[np.ndarray, tuple[float, ...]]:
        state = p.getLinkState(
            self.robot, GRASP_LINK, computeForwardKinematics=True, physicsClientId=self.world.client
        )
        return np.array(state[4]), tuple(state[5])

    def solve(self, position: np.ndarray, orientation: tuple[float, ...]) -> list[float]:
        """Arm joint angles that put the grasp link at a pose (seeded from the current state)."""
        angles = p.calculateInverseKinematics(
            self.robot,
            GRASP_LINK,
            list(position),
            list(orientation),
            jointDamping=[0.01] * 9,
            maxNumIterations=20,
            physicsClientId=self.world.client,
        )
        return list(angles[:7])

    def reach_error(self, position: np.ndarray, orientation: tuple[float, ...]) -> float:
        """How far (metres) the IK solution for a pose leaves the grasp link from it; the arm's state,
        velocities included, is restored afterwards."""
        client = self.world.client
        saved = [p.getJointState(self.robot, j, physicsClientId=client)[:2] for j in ARM_JOINTS]
        for _ in range(3):  # IK is seeded from the current state: iterate from the solution
            for joint, angle in zip(ARM_JOINTS, self.solve(position, orientation), strict=True):
                p.resetJointState(self.robot, joint, angle, physicsClientId=client)
        reached = np.array(
            p.getLinkState(self.robot, GRASP_LINK, computeForwardKinematics=True, physicsClientId=client)[4]
        )
        for joint, (angle, velocity) in zip(ARM_JOINTS, saved, strict=True):
            p.resetJointState(self.robot, joint, angle, velocity, physicsClientId=client)
        return float(np.linalg.norm(reached - position))

    def unreachable(self, position: np.ndarray, orientation: tuple[float, ...]) -> str:
        """Why the grasp link cannot be put at this pose (IK misses it by over MISSED); "" if it can."""
        error = self.reach_error(position, orientation)
        if error <= MISSED:
            return ""
        where = ", ".join(f"{v:g}" for v in np.round(position, 3))
        return f"out of reach: inverse kinematics misses ({where}) by {error * 1000:.0f} mm"

    def move(
        self,
        position: np.ndarray,
        orientation: tuple[float, ...],
        speed: float = SPEED,
        recover: bool = False,
    ) -> None:
        """A straight Cartesian line with a cosine speed profile, the hand turning evenly along it from its
        orientation to the one asked (IK every step), then settle. Asked for the whole turn at the first
        step, the IK lost its way on long moves: carrying an object from the table's right to the tray's
        far corner, the hand stopped 53 cm short. `recover`, for moves through free space: if the line
        misses its pose, try it again from the home posture (a descent stopped by what it came down on
        is not to be repeated)."""
        self._line(position, orientation, speed)
        if recover and np.linalg.norm(self.hand_pose()[0] - position) > MISSED:
            # The IK is seeded from the arm's posture, and from some it settles where it cannot reach
            # the pose (and stays there: every later move to the tray's far corner stopped 53 cm short,
            # packed seed 5003). Back to the home posture in joint space, and the line again from there.
            self._turn_joints(self.home)
            self._line(position, orientation, speed)

    def _line(self, position: np.ndarray, orientation: tuple[float, ...], speed: float) -> None:
        start, turned_from = self.hand_pose()
        distance = float(np.linalg.norm(position - start))
        steps = max(24, int(distance / speed * PHYSICS_HZ))
        client = self.world.client
        for i in range(1, steps + 1):
            s = 0.5 - 0.5 * math.cos(math.pi * i / steps)
            turned = p.getQuaternionSlerp(turned_from, orientation, s, physicsClientId=client)
            self._drive(start + (position - start) * s, turned)
        for _ in range(48):
            self._drive(position, orientation)

    def _turn_joints(self, angles: list[float], seconds: float = 1.0) -> None:
        """Turn the arm's joints evenly to `angles`, the fingers held as they are, then settle."""
        client = self.world.client
        start = np.array([p.getJointState(self.robot, j, physicsClientId=client)[0] for j in ARM_JOINTS])
        goal = np.array(angles)
        steps = int(seconds * PHYSICS_HZ)
        for i in range(1, steps + 49):
            s = 0.5 - 0.5 * math.cos(math.pi * min(i / steps, 1.0))
            self._command_arm(list(start + (goal - start) * s))
            self._drive(*self.hand_pose(), track=False)

    def grip(self, width: float, seconds: float) -> None:
        self.fingers = width / 2
        position, orientation = self.hand_pose()
        for _ in range(int(seconds * PHYSICS_HZ)):
            self._drive(position, orientation, track=False)

    def _command_arm(self, angles: list[float]) -> None:
        """Set the arm's joint motors to `angles` (position control at the joints' own forces)."""
        p.setJointMotorControlArray(
            self.robot,
            list(ARM_JOINTS),
            p.POSITION_CONTROL,
            targetPositions=angles,
            forces=self.forces,
            physicsClientId=self.world.client,
        )

    def _drive(self, position: np.ndarray, orientation: tuple[float, ...], track: bool = True) -> None:
        client = self.world.client
        if track:
            self._command_arm(self.solve(position, orientation))
        for finger in FINGERS:
            p.setJointMotorControl2(
                self.robot,
                finger,
                p.POSITION_CONTROL,
                targetPosition=self.fingers,
                force=FINGER_FORCE,
                physicsClientId=client,
            )
        self.world.step()
        self.on_step()


def top_down(yaw: float) -> tuple[float, ...]:
    return tuple(p.getQuaternionFromEuler([math.pi, 0.0, yaw]))


def normalise_yaw(orientation: tuple[float, ...], position: np.ndarray) -> tuple[float, ...]:
    """A parallel-jaw grasp is the same turned half a turn about its approach axis: pick the turn whose
    yaw is nearest atan2(y, x), so joint 7 stays inside its limits (only for near top-down grasps)."""
    rotation = np.array(p.getMatrixFromQuaternion(orientation)).reshape(3, 3)
    if rotation[2, 2] > -0.8:  # approach axis (the hand's z) not pointing down: leave it
        return orientation
    yaw = math.atan2(rotation[1, 0], rotation[0, 0])
    facing = math.atan2(position[1], position[0])
    candidates = [yaw, yaw + math.pi, yaw - math.pi]
    best = min(candidates, key=lambda y: abs(math.remainder(y - facing, 2 * math.pi)))
    turn = p.getQuaternionFromEuler([0.0, 0.0, best - yaw])
    return tuple(p.multiplyTransforms([0, 0, 0], turn, [0, 0, 0], orientation)[1])


def execute_grasp(
    panda: Panda,
    objects: list[int],
    position: tuple[float, float, float],
    orientation: tuple[float, float, float, float],
    width: float,
    place: bool = True,
) -> GraspOutcome:
    """Approach from above, close to `width` (the fingers then squeeze), lift, hold, and optionally drop
    the object in the tray. Success: the grasped object rose at least 10 cm and stayed up for 1 s."""
    client = panda.world.client
    if not 0.0 < width <= MAX_OPENING:
        return GraspOutcome(False, f"opening width {width:.3f} m is outside (0, {MAX_OPENING}] m")
    target = np.asarray(position, np.float64)
    approach = normalise_yaw(orientation, target)
    unreachable = panda.unreachable(target, approach)
    if unreachable:
        return GraspOutcome(False, unreachable)

    def heights() -> np.ndarray:
        return np.array([p.getBasePositionAndOrientation(b, physicsClientId=client)[0][2] for b in objects])

    # Which object the fingers hold is read from what rose, not guessed beforehand: in a heap the body
    # whose origin is nearest the grasp point is often not the one between the fingers.
    start_z = heights()
    # Open only as wide as asked: the planner checked that pads this far apart land on free space, and
    # fully open they would come down on a touching neighbour.
    panda.grip(width, 0.2)
    panda.move(target + np.array([0.0, 0.0, 0.12]), approach, recover=True)
    panda.move(target, approach)
    panda.grip(0.0, 0.5)  # squeeze: the object stops the fingers at its width
    panda.move(target + np.array([0.0, 0.0, LIFT_HEIGHT]), approach)
    lowest = np.full(len(objects), math.inf)
    for _ in range(int(HOLD_S * PHYSICS_HZ)):
        panda.grip(0.0, 1.0 / PHYSICS_HZ)
        lowest = np.minimum(lowest, heights())
    rise = lowest - start_z
    held = int(rise.argmax()) if len(objects) else -1
    nearest = objects[held] if held >= 0 else -1
    lifted = float(rise[held]) if held >= 0 else 0.0
    success = lifted >= SUCCESS_LIFT
    placed = False
    if success and place:
        spot = tray_spot(panda, [b for b in objects if b != nearest])
        over = np.array([spot[0], spot[1], CARRY_HEIGHT])
        facing = top_down(math.atan2(spot[1], spot[0]) - math.pi / 2)
        # Across high, down and up straight: on a slant from the lift, a held object swept the heap on the
        # table, and the open fingers leaving sideways swept the tray's top layer back out over its wall.
        panda.move(over, facing, recover=True)
        panda.move(spot, facing, recover=True)
        panda.grip(MAX_OPENING, 0.5)
        panda.move(over, facing, recover=True)
        placed = True
    if not success:
        panda.grip(MAX_OPENING, 0.3)
    panda.move(np.array([0.4, 0.0, 0.4]), top_down(0.0), recover=True)
    reason = (
        "held" if success else f"the object rose {lifted * 100:.1f} cm, less than {SUCCESS_LIFT * 100:.0f} cm"
    )
    return GraspOutcome(success, reason, nearest, lifted, placed)


def tray_spot(panda: Panda, objects: list[int]) -> np.ndarray:
    """Where to let the next object go: the spot farthest from the objects in the tray (the middle on an
    empty tray, else the first such spot on a tie), at the release height."""
    client = panda.world.client
    (x0, y0, _), (x1, y1, _) = p.getAABB(panda.tray, physicsClientId=client)
    m = TRAY_SPOT_MARGIN
    grid = [(x, y) for x in (x0 + m, (x0 + x1) / 2, x1 - m) for y in (y0 + m, (y0 + y1) / 2, y1 - m)]
    spots = np.array([grid[4], *grid[:4], *grid[5:]])  # the middle first
    # Over the tray's bounds, as sim.tabletop.in_tray judges it (this module and that one are siblings:
    # neither imports the other).
    where = np.array(
        [p.getBasePositionAndOrientation(b, physicsClientId=client)[0][:2] for b in objects]
    ).reshape(-1, 2)
    inside = where[(where[:, 0] >= x0) & (where[:, 0] <= x1) & (where[:, 1] >= y0) & (where[:, 1] <= y1)]
    room = (
        np.linalg.norm(spots[:, None] - inside[None], axis=2).min(axis=1)
        if len(inside)
        else np.zeros(len(spots))
    )
    x, y = spots[int(room.argmax())]
    return np.array([x, y, TRAY_RELEASE_HEIGHT])


@dataclass
class PushOutcome:
    success: bool  # the push was carried out (not whether it helped: the next frame tells)
    reason: str
    object_id: int = -1  # the body that moved most, -1 if none moved
    moved_m: float = 0.0  # how far it moved


def execute_push(
    panda: Panda,
    objects: list[int],
    start: tuple[float, float, float],
    end: tuple[float, float, float],
) -> PushOutcome:
    """Close the fingers, come down beside an object at `start`, push in a straight line to `end` (world
    points at the fingertips' height), rise and go home. The hand is turned so its fingers close along
    the push: its long side follows the line instead of sweeping a 20 cm swath across neighbours."""
    client = panda.world.client
    begin, finish = np.asarray(start, np.float64), np.asarray(end, np.float64)
    if not (np.all(np.isfinite(begin)) and np.all(np.isfinite(finish))):
        return PushOutcome(False, f"push from {tuple(begin)} to {tuple(finish)}: expected finite points")
    line = finish - begin
    length = float(np.linalg.norm(line[:2]))
    if not 0.01 <= length <= PUSH_LONGEST:
        return PushOutcome(
            False, f"push length {length * 100:.1f} cm is outside [1, {PUSH_LONGEST * 100:.0f}] cm"
        )
    if min(begin[2], finish[2]) < PUSH_LOWEST:
        return PushOutcome(
            False,
            f"push height {min(begin[2], finish[2]) * 100:.1f} cm: the fingertips would scrape the "
            f"table (at least {PUSH_LOWEST * 100:.1f} cm)",
        )
    # The fingers close along (sin yaw, -cos yaw): along the push when yaw is its heading plus a quarter.
    hand = normalise_yaw(top_down(math.atan2(line[1], line[0]) + math.pi / 2), begin)
    for point in (begin, finish):
        unreachable = panda.unreachable(point, hand)
        if unreachable:
            return PushOutcome(False, unreachable)
    before = {
        body: np.array(p.getBasePositionAndOrientation(body, physicsClientId=client)[0]) for body in objects
    }
    above = np.array([0.0, 0.0, 0.12])
    panda.grip(0.0, 0.3)
    panda.move(begin + above, hand, recover=True)
    panda.move(begin, hand)
    panda.move(finish, hand, speed=PUSH_SPEED)
    panda.move(finish + above, hand)
    panda.grip(MAX_OPENING, 0.2)
    panda.move(np.array([0.4, 0.0, 0.4]), top_down(0.0), recover=True)
    moved = {
        body: float(
            np.linalg.norm(
                np.array(p.getBasePositionAndOrientation(body, physicsClientId=client)[0])[:2] - at[:2]
            )
        )
        for body, at in before.items()
    }
    most = max(moved, key=moved.__getitem__, default=-1)
    distance = moved.get(most, 0.0)
    if distance < 0.005:
        return PushOutcome(True, "pushed, but nothing moved", -1, distance)
    return PushOutcome(True, f"pushed: an object moved {distance * 100:.1f} cm", most, distance)
