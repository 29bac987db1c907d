"""The grasp planner node: detections + the depth image and camera info of the same frame -> grasps.

Topics: `detections`, `depth` (32FC1 metres, or 16UC1 millimetres as ROS 2 depth drivers publish
it: REP 118), `camera_info` -> `grasps` (Grasps, stamped like the
detections; with pushes for the objects without a grasp when no grasp is left to offer, unless `pushes` is
false). It listens to the pick loop's `attempts` too: a grasp that failed is not offered again until a
push moves the scene (perception.grasp.FailedGrasps, the rule the pick policy keeps). Depth and camera info
wait in small buffers and are paired with each detections message by stamp (`tolerance_s`); detections
that arrive first wait for them, up to `pair_wait_s`. A frame without its depth or camera info still
gets a Grasps message, with every detection rejected and the reason, so nothing is dropped silently.
"""

from __future__ import annotations

import numpy as np

from perception import Node, run
from perception.detector.defaults import DEFAULT_CONFIDENCE
from perception.errors import ParameterError
from perception.geometry import matrix_from_quaternion, pose_matrix
from perception.grasp import FailedGrasps, GraspInputError, GraspPlanner, Gripper, Workspace
from perception.msgs import CameraInfo, Detections, Grasps, Image, PickAttempt
from perception.nodes._class_filter import ClassFilter
from perception.nodes._pairing import detections_paired_with, hand_on_held
from perception.runtime.sync import StampBuffer

# Depth encodings the planner reads, and the metres in one unit of each (REP 118; 0 is no reading in
# both, and the planner leaves out zeros and NaN alike).
DEPTH_UNITS_M = {"32FC1": 1.0, "16UC1": 0.001}


def _range(name: str, value: object) -> tuple[float, float]:
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, (int, float)) for v in value)
        or not value[0] < value[1]
    ):
        raise ParameterError(
            f"parameter {name!r}: expected [low, high] in metres with low < high, found {value!r}"
        )
    return (float(value[0]), float(value[1]))


class GraspPlannerNode(Node):
    """Plan parallel-jaw grasps for the detected objects."""

    def __init__(self) -> None:
        super().__init__("grasp_planner")
        tolerance = self.declare_parameter(
            "tolerance_s", 0.02, "max stamp gap to pair frames", read_only=True
        )
        self.confidence = _score(
            self.declare_parameter("confidence", DEFAULT_CONFIDENCE, "ignore detections scored lower")
        )
        self.class_filter = ClassFilter(
            self.declare_parameter(
                "classes", [], "plan only for these classes (the detector's names); empty: all"
            )
        )
        hand = Gripper()  # the Panda's: the defaults
        gripper = Gripper(
            max_opening=self.declare_parameter("max_opening", hand.max_opening, "metres", read_only=True),
            finger_length=self.declare_parameter(
                "finger_length", hand.finger_length, "metres", read_only=True
            ),
            clearance=self.declare_parameter("clearance", hand.clearance, "metres each side", read_only=True),
            palm_height=self.declare_parameter(
                "palm_height",
                hand.palm_height,
                "the hand's underside over the grasp point (m)",
                read_only=True,
            ),
            hand_length=self.declare_parameter(
                "hand_length",
                hand.hand_length,
                "the hand's extent along the closing direction (m)",
                read_only=True,
            ),
            hand_width=self.declare_parameter(
                "hand_width", hand.hand_width, "the hand's extent across it (m)", read_only=True
            ),
        )
        x_range = self.declare_parameter(
            "workspace_x", [-10.0, 10.0], "world x range to pick from", read_only=True
        )
        y_range = self.declare_parameter(
            "workspace_y", [-10.0, 10.0], "world y range to pick from", read_only=True
        )
        workspace = Workspace(
            x=_range("workspace_x", x_range),
            y=_range("workspace_y", y_range),
            max_height=self.declare_parameter(
                "max_height", 0.3, "tallest object to pick (m)", read_only=True
            ),
            reach=_positive(
                "workspace_reach",
                self.declare_parameter(
                    "workspace_reach",
                    100.0,
                    "metres from the arm's base (world origin) it reaches",
                    read_only=True,
                ),
            ),
        )
        step = self.declare_parameter("step", 2, "pixel stride", read_only=True, range=(1, 64))
        pushes = self.declare_parameter(
            "pushes", True, "plan pushes for objects without a grasp", read_only=True
        )
        self.planner = GraspPlanner(gripper, workspace, step=step, pushes=bool(pushes))
        handeye_file = self.declare_parameter(
            "handeye",
            "",
            "an eye-to-hand file of percept calibrate handeye: grasps in the robot's base frame (empty: the "
            "camera's pose from camera_info)",
            read_only=True,
        )
        self.camera_in_base = _camera_in_base(handeye_file) if handeye_file else None
        self.depths: StampBuffer[Image] = StampBuffer(10, tolerance)
        self.infos: StampBuffer[CameraInfo] = StampBuffer(10, tolerance)
        self.sync = detections_paired_with(
            self, [(Image, "depth", self.depths), (CameraInfo, "camera_info", self.infos)], self.on_detections
        )
        self.failed = FailedGrasps()
        self.create_subscription(PickAttempt, "attempts", self.on_attempt)
        self.publisher = self.create_publisher(Grasps, "grasps")
        self.parameters.on_change(self._retune)

    def _retune(self, name: str, value: object) -> None:
        if name == "confidence":
            self.confidence = _score(value)
        elif name == "classes":
            self.class_filter = ClassFilter(value)  # type: ignore[arg-type]

    def on_attempt(self, msg: PickAttempt) -> None:
        closing = matrix_from_quaternion(msg.pose.orientation)[:, 1]  # the hand's y axis closes it
        self.failed.record(msg.action, np.array(msg.pose.position), closing, msg.success)

    def on_shutdown(self) -> None:
        hand_on_held(self, self.sync)

    def _reject_all(self, msg: Detections, wanted: list[int], why: str) -> None:
        """Grasps for the frame with every wanted detection rejected for the same reason."""
        self.publisher.publish(
            Grasps(
                header=msg.header,
                rejected_indices=np.array(wanted, np.int32),
                rejected_reasons=[why] * len(wanted),
            )
        )

    def on_detections(self, msg: Detections) -> None:
        stamp = msg.header.stamp
        named = self.class_filter.keep(msg.class_names)
        wanted = [i for i in range(len(msg)) if msg.scores[i] >= self.confidence and named[i]]
        if news := self.class_filter.news():
            self.log.warning("%s", news)
        depth, info = self.depths.nearest(stamp), self.infos.nearest(stamp)
        why = ""
        if depth is None:
            why = f"no depth frame for this stamp ({self.depths.describe(stamp)})"
        elif info is None:
            why = f"no camera info for this stamp ({self.infos.describe(stamp)})"
        elif depth.encoding not in DEPTH_UNITS_M:
            why = f"depth encoding {depth.encoding!r}; expected 32FC1 (metres) or 16UC1 (millimetres)"
        elif depth.data.shape[:2] != (info.height, info.width):
            # An RGB-D camera whose depth is not registered to its colour image: boxes would read the
            # wrong pixels and grasps land elsewhere, silently.
            why = (
                f"depth {depth.data.shape[1]}x{depth.data.shape[0]} and camera info {info.width}x{info.height} "
                "differ; expected depth registered to the colour camera"
            )
        if why or depth is None or info is None:
            self._reject_all(msg, wanted, why)
            return
        metres = (
            depth.data
            if depth.encoding == "32FC1"
            else depth.data * np.float32(DEPTH_UNITS_M[depth.encoding])
        )
        try:
            camera_pose = (
                self.camera_in_base
                if self.camera_in_base is not None
                else pose_matrix(info.pose.position, info.pose.orientation)
            )
        except ValueError as exc:  # a quaternion of length 0: no rotation at all
            self._reject_all(msg, wanted, f"camera info's pose: {exc}")
            return
        try:
            plan = self.planner.plan(
                metres,
                info.K,
                camera_pose,
                msg.xyxy[wanted],
                [msg.class_names[i] for i in wanted],
                self.failed,
            )
        except GraspInputError as exc:
            # A camera info the planner cannot use (a K of another resolution, a pose that is not
            # rigid): the frame's reason for each detection, as for a missing one, not a dead callback.
            self._reject_all(msg, wanted, str(exc))
            return
        grasps = plan.grasps
        self.publisher.publish(
            Grasps(
                header=msg.header,
                positions=np.array([g.position for g in grasps]).reshape(-1, 3),
                orientations=np.array([g.orientation for g in grasps]).reshape(-1, 4),
                closings=np.array([g.closing for g in grasps]).reshape(-1, 3),
                widths=np.array([g.width for g in grasps], np.float32),
                qualities=np.array([g.quality for g in grasps], np.float32),
                detection_indices=np.array([wanted[g.detection] for g in grasps], np.int32),
                class_names=[g.class_name for g in grasps],
                rejected_indices=np.array([wanted[i] for i, _ in plan.rejected], np.int32),
                rejected_reasons=[reason for _, reason in plan.rejected],
                outside_indices=np.array([wanted[i] for i, _ in plan.outside], np.int32),
                planning_ms=plan.planning_ms,
                push_starts=np.array([q.start for q in plan.pushes]).reshape(-1, 3),
                push_ends=np.array([q.end for q in plan.pushes]).reshape(-1, 3),
                push_qualities=np.array([q.quality for q in plan.pushes], np.float32),
                push_detection_indices=np.array([wanted[q.detection] for q in plan.pushes], np.int32),
                push_class_names=[q.class_name for q in plan.pushes],
            )
        )


def _camera_in_base(path: str) -> np.ndarray:
    """base_T_camera from an eye-to-hand calibration. An eye-in-hand one moves with the arm: its pose
    at each frame is the arm's pose composed with it, which belongs in camera_info (the camera node's
    or the bridge's pose), not in a fixed transform here."""
    from perception.camera.handeye import load_handeye
    from perception.errors import PerceptError

    try:
        calibration = load_handeye(path)
    except PerceptError as exc:
        raise ParameterError(f"parameter 'handeye': {exc}") from None
    if calibration.mode != "eye-to-hand":
        raise ParameterError(
            f"parameter 'handeye': {path} is {calibration.mode}: the camera moves with the hand, so its pose "
            "is the arm's at each frame composed with it; publish that as camera_info's pose instead"
        )
    return calibration.transform


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ParameterError(f"parameter {name!r}: expected a distance in metres above 0, found {value!r}")
    return float(value)


def _score(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ParameterError(f"parameter confidence: expected a score from 0 to 1, found {value!r}")
    return float(value)


if __name__ == "__main__":
    run(GraspPlannerNode)
