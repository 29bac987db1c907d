"""The pick-and-place loop: take the best grasp of a fresh frame, ask the arm to execute it (the
simulator's `execute_grasp` service, or a real robot's with the same messages), and repeat until the
table is clear or it gives up. Each attempt is published on `attempts`; the end is a summary line.

Only grasps planned on frames stamped after the previous attempt ended are used: during an attempt the
camera still sees the old scene (and the arm in it).
"""

from __future__ import annotations

import time

import numpy as np

from perception import LATEST_ONLY, Node, run
from perception.errors import PerceptError, ServiceUnavailable
from perception.geometry import matrix_from_quaternion
from perception.grasp import first_untried
from perception.msgs import ExecuteGrasp, GraspResult, Grasps, Header, PickAttempt, Pose


class PickLoop(Node):
    """Pick the detected objects one by one until none is left."""

    def __init__(self) -> None:
        super().__init__("pick_loop")
        service = self.declare_parameter(
            "service", "/sim/execute_grasp", "ExecuteGrasp service", read_only=True
        )
        self.max_attempts = self.declare_parameter(
            "max_attempts", 15, "give up after this many attempts", read_only=True
        )
        self.max_failures = self.declare_parameter(
            "max_failures", 3, "give up after this many in a row", read_only=True
        )
        self.clear_frames = self.declare_parameter(
            "clear_frames", 3, "frames without objects = table clear", read_only=True
        )
        self.exit_when_done = self.declare_parameter(
            "exit_when_done", True, "exit when the loop ends", read_only=True
        )
        self.client = self.create_client(service, ExecuteGrasp, GraspResult)
        self.subscription = self.create_subscription(Grasps, "grasps", self.on_grasps, LATEST_ONLY)
        self.publisher = self.create_publisher(PickAttempt, "attempts")
        self.attempts = self.successes = self.failures_in_row = 0
        self.empty_frames = self.stuck_frames = 0
        # Grasps planned on frames taken before the last motion ended show a table that is gone. The
        # frames' stamps are the simulator's clock (wall or simulated), so the sim's reply says when.
        self.not_before_ns = 0
        self.started: float | None = None
        self.done = False
        self.waiting_for_arm = False
        self.failed: list[tuple[np.ndarray, np.ndarray]] = []  # grasps that failed: not tried again
        self.summary = ""

    def on_grasps(self, msg: Grasps) -> None:
        if self.done or msg.header.stamp <= self.not_before_ns:
            return
        if self.started is None:
            self.started = time.monotonic()
        if len(msg) == 0:
            if len(msg.rejected_indices) == 0:
                self.empty_frames += 1
                if self.empty_frames >= self.clear_frames:
                    self.finish("the table is clear")
            else:
                self.stuck_frames += 1
                if self.stuck_frames >= self.clear_frames:
                    self.finish(
                        f"{len(msg.rejected_indices)} object(s) left without a grasp: {msg.rejected_reasons[0]}"
                    )
            return
        self.empty_frames = 0
        self.attempt(msg)

    def attempt(self, msg: Grasps) -> None:
        closings = np.array([matrix_from_quaternion(q)[:, 1] for q in msg.orientations])
        choice = first_untried(msg.positions, closings, self.failed)
        if choice is None:  # every grasp on offer failed before: like a frame without a feasible one
            self.stuck_frames += 1
            if self.stuck_frames >= self.clear_frames:
                self.finish(f"{len(msg)} grasp(s) left, each failed before")
            return
        self.stuck_frames = 0
        pose = Pose(tuple(msg.positions[choice]), tuple(msg.orientations[choice]))  # type: ignore[arg-type]
        width = float(msg.widths[choice])
        try:
            result = self.client.call(ExecuteGrasp(pose=pose, width=width, place=True), timeout_s=120)
            success, reason, done_stamp = result.success and result.placed, result.reason, result.done_stamp
        except ServiceUnavailable as exc:  # the arm is not up yet: not an attempt; try on the next frame
            if not self.waiting_for_arm:
                self.log.warning("%s; waiting for it", exc)
            self.waiting_for_arm = True
            return
        except PerceptError as exc:  # a timeout or a failed call: an attempt that failed
            success, reason, done_stamp = False, str(exc), 0
        self.waiting_for_arm = False
        self.attempts += 1
        self.not_before_ns = done_stamp or msg.header.stamp  # a call that failed: at least not this frame
        self.successes += success
        self.failures_in_row = 0 if success else self.failures_in_row + 1
        if not success:
            self.failed.append((msg.positions[choice].copy(), closings[choice]))
        self.publisher.publish(
            PickAttempt(
                header=Header(stamp=msg.header.stamp, frame_id="world"),
                attempt=self.attempts,
                class_name=msg.class_names[choice],
                pose=pose,
                width=width,
                quality=float(msg.qualities[choice]),
                success=success,
                reason=reason,
            )
        )
        self.log.info(
            "attempt %d: %s at (%.3f, %.3f, %.3f), width %.1f cm: %s",
            self.attempts,
            msg.class_names[choice],
            *pose.position,
            width * 100,
            "picked and placed" if success else reason,
        )
        if self.failures_in_row >= self.max_failures:
            self.finish(f"{self.failures_in_row} failures in a row")
        elif self.attempts >= self.max_attempts:
            self.finish(f"{self.attempts} attempts, the most allowed")

    def finish(self, why: str) -> None:
        self.done = True
        seconds = time.monotonic() - (self.started or time.monotonic())
        self.summary = (
            f"pick loop done ({why}): {self.successes} picked in {self.attempts} attempts "
            f"({self.successes / max(self.attempts, 1):.0%} success), {seconds:.1f} s"
        )
        self.log.info(self.summary)
        if self.exit_when_done:
            self.request_shutdown()


if __name__ == "__main__":
    run(PickLoop)
