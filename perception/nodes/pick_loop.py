"""The pick-and-place loop: take the best grasp of a fresh frame, ask the arm to execute it (the
simulator's `execute_grasp` service, or a real robot's with the same messages), and repeat until the
table is clear or it gives up. Each attempt is published on `attempts`; the end is a summary line.
Which grasp to try and when to stop is the pick policy's (perception.grasp.pick_policy), which
`percept bench grasp` runs too.

Only grasps planned on frames stamped after the previous attempt ended are used: during an attempt the
camera still sees the old scene (and the arm in it).
"""

from __future__ import annotations

import time

from perception import LATEST_ONLY, Node, run
from perception.errors import PerceptError, ServiceUnavailable
from perception.grasp import PickLimits, PickPolicy
from perception.msgs import ExecuteGrasp, GraspResult, Grasps, Header, PickAttempt, Pose

_DEFAULTS = PickLimits()


class PickLoop(Node):
    """Pick the detected objects one by one until none is left."""

    def __init__(self) -> None:
        super().__init__("pick_loop")
        service = self.declare_parameter(
            "service", "/sim/execute_grasp", "ExecuteGrasp service", read_only=True
        )
        limits = PickLimits(
            max_attempts=self.declare_parameter(
                "max_attempts", _DEFAULTS.max_attempts, "give up after this many attempts", read_only=True
            ),
            max_failures=self.declare_parameter(
                "max_failures", _DEFAULTS.max_failures, "give up after this many in a row", read_only=True
            ),
            clear_frames=self.declare_parameter(
                "clear_frames", _DEFAULTS.clear_frames, "frames without objects = table clear", read_only=True
            ),
        )
        self.exit_when_done = self.declare_parameter(
            "exit_when_done", True, "exit when the loop ends", read_only=True
        )
        self.client = self.create_client(service, ExecuteGrasp, GraspResult)
        self.subscription = self.create_subscription(Grasps, "grasps", self.on_grasps, LATEST_ONLY)
        self.publisher = self.create_publisher(PickAttempt, "attempts")
        self.policy = PickPolicy(limits)
        # Grasps planned on frames taken before the last motion ended show a table that is gone. The
        # frames' stamps are the simulator's clock (wall or simulated), so the sim's reply says when.
        self.not_before_ns = 0
        self.started: float | None = None
        self.done = False
        self.waiting_for_arm = False
        self.summary = ""

    def on_grasps(self, msg: Grasps) -> None:
        if self.done or msg.header.stamp <= self.not_before_ns:
            return
        if self.started is None:
            self.started = time.monotonic()
        choice = self.policy.choose(msg.positions, msg.closings, msg.rejected_reasons)
        if choice is not None:
            self.attempt(msg, choice)
        if self.policy.done:
            self.finish(self.policy.ended)

    def attempt(self, msg: Grasps, choice: int) -> None:
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
        self.not_before_ns = done_stamp or msg.header.stamp  # a call that failed: at least not this frame
        self.policy.record(msg.positions[choice], msg.closings[choice], success)
        self.publisher.publish(
            PickAttempt(
                header=Header(stamp=msg.header.stamp, frame_id="world"),
                attempt=self.policy.attempts,
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
            self.policy.attempts,
            msg.class_names[choice],
            *pose.position,
            width * 100,
            "picked and placed" if success else reason,
        )

    def finish(self, why: str) -> None:
        self.done = True
        seconds = time.monotonic() - (self.started or time.monotonic())
        self.summary = (
            f"pick loop done ({why}): {self.policy.successes} picked in {self.policy.attempts} attempts "
            f"({self.policy.successes / max(self.policy.attempts, 1):.0%} success), {seconds:.1f} s"
        )
        self.log.info(self.summary)
        if self.exit_when_done:
            self.request_shutdown()


if __name__ == "__main__":
    run(PickLoop)
