"""Hand-eye calibration data from the simulator, where the answer is known: the Panda moves to seeded
arm poses; in eye-to-hand it holds a board in front of the fixed tabletop camera, in eye-in-hand a
camera on its hand looks at a board on the table. What `percept calibrate handeye` is tested against.

The arm gives its poses by forward kinematics (as a real arm's driver does); the images show the
board alone (the arm is posed in a world of its own), so every view is about the geometry, not about
whether the fingers hid a corner.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pybullet as p

from perception.geometry import pose_matrix
from sim.calibration_board import board_body
from sim.camera import CameraSpec, intrinsics, world_from_camera
from sim.grasp import ARM_JOINTS, GRASP_LINK
from sim.tabletop import PANDA_HOME
from sim.world import World

# Where the board sits in the gripper (eye-to-hand): 12 cm out along the approach, facing back up the
# arm; and where the camera sits on it (eye-in-hand): 6 cm off the flange, looking along the approach.
BOARD_IN_GRIPPER = pose_matrix((0.0, 0.0, 0.12), (1.0, 0.0, 0.0, 0.0))
CAMERA_IN_GRIPPER = pose_matrix((0.06, 0.0, -0.04), (0.0, 0.0, 0.0, 1.0))
BOARD_ON_TABLE = pose_matrix((0.45, 0.0, 0.001), (0.0, 0.0, 0.0, 1.0))


@dataclass
class HandEyeViews:
    images: list[np.ndarray]
    robot_poses: list[np.ndarray]  # base_T_gripper at each image
    K: np.ndarray
    truth: np.ndarray  # gripper_T_camera (eye-in-hand) or base_T_camera (eye-to-hand)


def hand_eye_views(
    texture: np.ndarray,
    size_m: tuple[float, float],
    mode: str,
    count: int,
    seed: int,
    camera: CameraSpec,
    renderer: str = "auto",
) -> HandEyeViews:
    rng = np.random.default_rng(seed)
    arm = World("tiny")  # forward kinematics only
    scene = World(renderer)
    try:
        robot = arm.load("franka_panda/panda.urdf", useFixedBase=True)
        images, poses = [], []
        with tempfile.TemporaryDirectory() as folder:
            board = board_body(scene, Path(folder), texture, size_m)
            # the quad's origin is its centre; the board's frame is its first inner corner (Board.corners_3d)
            for _ in range(count):
                spread = 0.35 if mode == "eye-to-hand" else 0.25
                angles = np.add(PANDA_HOME, rng.uniform(-spread, spread, len(ARM_JOINTS)))
                for joint, angle in zip(ARM_JOINTS, angles, strict=True):
                    p.resetJointState(robot, joint, float(angle), physicsClientId=arm.client)
                state = p.getLinkState(
                    robot, GRASP_LINK, computeForwardKinematics=True, physicsClientId=arm.client
                )
                gripper = pose_matrix(state[4], state[5])
                if mode == "eye-to-hand":
                    board_pose, view_camera = gripper @ BOARD_IN_GRIPPER, camera
                else:
                    board_pose = BOARD_ON_TABLE
                    view_camera = _camera_at(camera, gripper @ CAMERA_IN_GRIPPER)
                _place(scene, board, board_pose)
                rgb, _, _ = scene.render(view_camera, light_direction=(0.2, 0.1, 1.0))
                images.append(rgb)
                poses.append(gripper)
        truth = world_from_camera(camera) if mode == "eye-to-hand" else CAMERA_IN_GRIPPER
        return HandEyeViews(images, poses, intrinsics(camera, scene.renderer), truth)
    finally:
        arm.close()
        scene.close()


def _place(world: World, body: int, pose: np.ndarray) -> None:
    from perception.geometry import quaternion_from_matrix

    p.resetBasePositionAndOrientation(
        body, pose[:3, 3].tolist(), list(quaternion_from_matrix(pose[:3, :3])), physicsClientId=world.client
    )


def _camera_at(camera: CameraSpec, pose: np.ndarray) -> CameraSpec:
    """`camera`'s lens at `pose` (its optical frame: z forward, y down)."""
    eye = pose[:3, 3]
    return CameraSpec(
        width=camera.width,
        height=camera.height,
        fov_deg=camera.fov_deg,
        near=0.02,
        far=camera.far,
        eye=tuple(eye),
        target=tuple(eye + pose[:3, 2]),
        up=tuple(-pose[:3, 1]),
    )
