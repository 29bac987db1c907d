"""The simulator node: publishes camera frames, depth, camera info and ground truth of a PyBullet scene.

Topics (relative, so a namespace or remapping moves them): camera/image (rgb8), camera/depth (32FC1,
metres), camera/camera_info, ground_truth. All messages of one frame share one header. Services:
~/reset (percept/Reset -> percept/Result) and, in the tabletop scene, ~/execute_grasp
(percept/ExecuteGrasp -> percept/GraspResult) and ~/execute_push (percept/ExecutePush ->
percept/PushResult); frames keep coming while the arm moves.

Clock: `realtime` paces physics (240 Hz) and frames (`rate`) to the wall clock and stamps frames with
it; `fast` runs as fast as it can and stamps frames with the simulation time (ns since the scene was
built), for benchmarks and dataset generation.

Priority: the simulator plays the world, which on a robot takes no CPU from the perception nodes; so
by default it runs at the lowest priority (`nice` 19) and the nodes under test get the cores first.
On 2 cores, beside a simulator at normal priority, the detector's frame-to-detections latency doubled.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from perception import Node, run
from perception.geometry import quaternion_from_matrix
from perception.msgs import (
    CameraInfo,
    ExecuteGrasp,
    ExecutePush,
    GraspResult,
    GroundTruth,
    Header,
    Image,
    Pose,
    PushResult,
    Reset,
    Result,
)
from sim import crowd, driving, tabletop
from sim.camera import CameraSpec
from sim.dataset import SCENES as DATASET_SCENES
from sim.frames import Frame, capture
from sim.grasp import Panda, execute_grasp, execute_push
from sim.world import PHYSICS_HZ, World

SCENES = (*DATASET_SCENES, "crowd")
CLOCKS = ("realtime", "fast")


class _Stopping(Exception):
    """The node was asked to stop during a motion of the arm: the motion ends where it is."""

    reason = "stopped: the simulator is shutting down"


class SimNode(Node):
    """PyBullet simulator: camera, depth, camera info and ground truth of a seeded scene."""

    def __init__(self) -> None:
        super().__init__("sim")
        # The scene changes through ~/reset (it rebuilds the world), not by setting these.
        self.scene_name = self.declare_parameter(
            "scene", "tabletop", f"one of {', '.join(SCENES)} (~/reset changes it)", read_only=True
        )
        self.seed = self.declare_parameter(
            "seed", 0, "scene seed: same seed, same scene (~/reset changes it)", read_only=True
        )
        self.scene_params: dict[str, Any] = self.declare_parameter(
            "scene_params",
            {},
            "scene parameters, e.g. {objects: 5, camera_jitter: 0.02} (~/reset changes them)",
            read_only=True,
        )
        width = self.declare_parameter("width", 640, "image width", read_only=True, range=(16, 4096))
        height = self.declare_parameter("height", 480, "image height", read_only=True, range=(16, 4096))
        self.rate = self.declare_parameter(
            "rate", 10.0, "camera frames per second (sim time)", read_only=True, range=(0.01, 1000.0)
        )
        self.clock = self.declare_parameter("clock", "realtime", "realtime or fast", read_only=True)
        renderer = self.declare_parameter("renderer", "auto", "auto, egl or tiny", read_only=True)
        gui = self.declare_parameter("gui", False, "open PyBullet's window (needs a display)", read_only=True)
        self.frame_id = self.declare_parameter("frame_id", "camera", "frame id of the images", read_only=True)
        if self.clock not in CLOCKS:
            raise ValueError(f"parameter 'clock': expected one of {', '.join(CLOCKS)}, found {self.clock!r}")
        self.camera = CameraSpec(width=width, height=height)
        niceness = self.declare_parameter(
            "nice", 19, "CPU niceness, 0-19 (19: yield the cores to the nodes under test)", read_only=True
        )
        self._lower_priority(niceness)
        self.world = World(renderer, gui)
        self.declare_parameter("renderer_in_use", self.world.renderer, "the renderer chosen", read_only=True)
        self.image_pub = self.create_publisher(Image, "camera/image")
        self.depth_pub = self.create_publisher(Image, "camera/depth")
        self.info_pub = self.create_publisher(CameraInfo, "camera/camera_info")
        self.truth_pub = self.create_publisher(GroundTruth, "ground_truth")
        self.create_service("~/reset", Reset, Result, self.on_reset)
        self.create_service("~/execute_grasp", ExecuteGrasp, GraspResult, self.on_execute_grasp)
        self.create_service("~/execute_push", ExecutePush, PushResult, self.on_execute_push)
        self.seq = 0
        self.steps_per_frame = max(1, round(PHYSICS_HZ / self.rate))
        self._slow_frames = 0
        self._warned_pace = False
        self._steps_since_frame = 0
        self.scene = self._build(self.scene_name, self.seed, self.scene_params)
        period = 1.0 / self.rate if self.clock == "realtime" else 1e-4
        self.create_timer(period, self.tick)

    def _lower_priority(self, niceness: int) -> None:
        """Raise this thread's niceness before the renderer starts its threads, which inherit it (on
        Linux niceness is per thread: the ZeroMQ I/O thread, already running, keeps sending frames at
        normal priority). Never lowers it: that needs privileges."""
        if not 0 <= niceness <= 19:
            raise ValueError(f"parameter 'nice': expected 0 to 19, found {niceness}")
        if not hasattr(os, "setpriority"):  # Windows
            self.log.warning("parameter 'nice' is not supported on this platform; running at normal priority")
            return
        current = os.getpriority(os.PRIO_PROCESS, 0)
        if niceness > current:
            os.setpriority(os.PRIO_PROCESS, 0, niceness)

    def _build(
        self, scene: str, seed: int, params: dict[str, Any]
    ) -> tabletop.TabletopScene | driving.DrivingScene | crowd.CrowdScene:
        self._motion_started = (time.monotonic(), 0.0)
        if scene == "tabletop":
            table = tabletop.TabletopScene(self.world, tabletop.params_from(params), seed, self.camera)
            self.panda: Panda | None = Panda(self.world, table.robot, table.tray, on_step=self._during_motion)
            return table
        if scene == "driving":
            self.panda = None
            return driving.DrivingScene(self.world, driving.params_from(params), seed, self.camera)
        if scene == "crowd":
            self.panda = None
            return crowd.CrowdScene(self.world, crowd.params_from(params), seed, self.camera)
        raise ValueError(f"unknown scene {scene!r}; scenes: {', '.join(SCENES)}")

    def on_reset(self, request: Reset) -> Result:
        scene = request.scene or self.scene_name
        params = request.params or self.scene_params
        try:
            self.scene = self._build(scene, request.seed, params)
        except Exception as exc:  # whatever failed, the world was cleared: it must not stay empty
            if not isinstance(exc, (ValueError, RuntimeError)):  # not a bad request: a bug, with its trace
                self.log.exception("reset failed")
            # The old scene is gone (the world was cleared): rebuild it so the node keeps publishing.
            self.scene = self._build(self.scene_name, self.seed, self.scene_params)
            return Result(success=False, message=str(exc))
        self.scene_name, self.seed, self.scene_params = scene, request.seed, params
        self.log.info("reset: %s scene, seed %d, %d objects", scene, request.seed, len(self.scene.objects))
        return Result(success=True, message=f"{scene} scene with {len(self.scene.objects)} objects")

    def on_execute_grasp(self, request: ExecuteGrasp) -> GraspResult:
        pose = request.pose
        if self.panda is None or not isinstance(self.scene, tabletop.TabletopScene):
            return GraspResult(
                success=False, reason=f"execute_grasp needs the tabletop scene, not {self.scene_name}"
            )
        self._motion_started = (time.monotonic(), self.world.time_s)
        try:
            outcome = execute_grasp(
                self.panda,
                [o.body for o in self.scene.every_object],
                pose.position,
                pose.orientation,
                request.width,
                request.place,
            )
        except _Stopping:
            return GraspResult(success=False, reason=_Stopping.reason)
        self.scene.refresh()  # what is on the table now: in the tray is not to pick
        self.log.info("grasp at %s: %s", tuple(round(v, 3) for v in pose.position), outcome.reason)
        return GraspResult(
            success=outcome.success,
            reason=outcome.reason,
            object_id=outcome.object_id,
            lifted_m=outcome.lifted_m,
            placed=outcome.placed,
            done_stamp=self._stamp_now(),
        )

    def on_execute_push(self, request: ExecutePush) -> PushResult:
        if self.panda is None or not isinstance(self.scene, tabletop.TabletopScene):
            return PushResult(
                success=False, reason=f"execute_push needs the tabletop scene, not {self.scene_name}"
            )
        self._motion_started = (time.monotonic(), self.world.time_s)
        try:
            outcome = execute_push(
                self.panda, [o.body for o in self.scene.every_object], request.start, request.end
            )
        except _Stopping:
            return PushResult(success=False, reason=_Stopping.reason)
        self.scene.refresh()
        self.log.info(
            "push from %s to %s: %s",
            tuple(round(v, 3) for v in request.start),
            tuple(round(v, 3) for v in request.end),
            outcome.reason,
        )
        return PushResult(
            success=outcome.success,
            reason=outcome.reason,
            object_id=outcome.object_id,
            moved_m=outcome.moved_m,
            done_stamp=self._stamp_now(),
        )

    def tick(self) -> None:
        started = time.monotonic()
        self.scene.advance(self.steps_per_frame)
        self._publish_now()
        if self.clock == "realtime":
            self._check_pace(time.monotonic() - started)

    def _check_pace(self, frame_s: float) -> None:
        """Real time needs each frame within the camera period; say so once if the machine cannot."""
        self._slow_frames = self._slow_frames + 1 if frame_s > 1.0 / self.rate else 0
        if self._slow_frames == 10 and not self._warned_pace:
            self._warned_pace = True
            self.log.warning(
                "cannot keep real time at %.1f frames/s: a frame takes %.0f ms (%s renderer, %dx%d); "
                "simulation time now runs slower than the clock. Lower rate, width or height.",
                self.rate,
                frame_s * 1000,
                self.world.renderer,
                self.camera.width,
                self.camera.height,
            )

    def _during_motion(self) -> None:
        """Called after each physics step of a grasp: keep publishing frames at the camera rate, and in
        real time keep the simulation from running ahead of the clock. A stop (Ctrl-C, the launcher's
        SIGTERM) ends the motion here: a grasp takes seconds, longer than a launcher waits for a node."""
        if self.shutdown_requested:
            raise _Stopping
        self._steps_since_frame += 1
        if self._steps_since_frame < self.steps_per_frame:
            return
        self._publish_now()
        if self.clock == "realtime":
            wall_start, sim_start = self._motion_started
            ahead = (self.world.time_s - sim_start) - (time.monotonic() - wall_start)
            if ahead > 0:
                time.sleep(ahead)

    def _publish_now(self) -> None:
        self._steps_since_frame = 0
        frame = capture(self.scene)
        header = Header(stamp=self._stamp_now(), frame_id=self.frame_id, seq=self.seq)
        self.seq += 1
        self.publish_frame(header, frame)

    def _stamp_now(self) -> int:
        """Wall-clock time in real time; simulation time with the fast clock (ns)."""
        return time.time_ns() if self.clock == "realtime" else round(self.world.time_s * 1e9)

    def publish_frame(self, header: Header, frame: Frame) -> None:
        self.image_pub.publish(Image(header=header, data=frame.rgb, encoding="rgb8"))
        self.depth_pub.publish(Image(header=header, data=frame.depth, encoding="32FC1"))
        pose = Pose(position=tuple(frame.pose[:3, 3]), orientation=quaternion_from_matrix(frame.pose[:3, :3]))
        self.info_pub.publish(
            CameraInfo(
                header=header,
                width=self.camera.width,
                height=self.camera.height,
                K=frame.K,
                D=np.zeros(5),
                pose=pose,
            )
        )
        self.truth_pub.publish(
            GroundTruth(
                header=header,
                ids=frame.ids,
                class_ids=frame.class_ids,
                class_names=frame.class_names,
                xyxy=frame.xyxy,
                positions=frame.positions,
                orientations=frame.orientations,
                visible_fraction=frame.visible_fraction,
            )
        )

    def on_shutdown(self) -> None:
        try:
            if isinstance(self.scene, tabletop.TabletopScene):
                self._say_what_is_left(self.scene)
        finally:
            self.world.close()

    def _say_what_is_left(self, scene: tabletop.TabletopScene) -> None:
        """A pick loop that saw nothing more to pick says "table clear"; the table may know better (an
        object the detector has no class for is never seen, so never picked): name what physics still
        has on the table."""
        scene.refresh()  # what physics has on the table now
        left = [o.class_name for o in scene.objects]
        if left:
            self.log.info(
                "%d of %d objects still on the table at the end: %s",
                len(left),
                len(scene.every_object),
                ", ".join(left),
            )


if __name__ == "__main__":
    run(SimNode)
