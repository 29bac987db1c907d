"""The pick-and-place loop: take the best grasp of a fresh frame, ask the arm to execute it (the
simulator's `execute_grasp` service, or a real robot's with the same messages), and repeat until the
table is clear or it gives up. When no grasp fits what is left, it pushes instead (the `execute_push`
service) and looks again. Each action is published on `attempts`; the end is a summary line. Which
grasp or push to try and when to stop is the pick policy's (perception.grasp.pick_policy), which
`percept bench grasp` runs too.

Only grasps planned on frames stamped after the previous action ended are used: during a motion the
camera still sees the old scene (and the arm in it).
"""

from __future__ import annotations

import time

from perception import LATEST_ONLY, Node, run
from perception.errors import PerceptError, ServiceUnavailable
from perception.grasp import GRASP, PickLimits, PickPolicy
from perception.msgs import (
    ExecuteGrasp,
    ExecutePush,
    GraspResult,
    Grasps,
    Header,
    PickAttempt,
    Pose,
    PushResult,
)

_DEFAULTS = PickLimits()


class PickLoop(Node):
    """Pick the detected objects one by one until none is left."""

    def __init__(self) -> None:
        super().__init__("pick_loop")
        service = self.declare_parameter(
            "service", "sim/execute_grasp", "ExecuteGrasp service", read_only=True
        )
        push_service = self.declare_parameter(
            "push_service", "sim/execute_push", "ExecutePush service; empty: never push", read_only=True
        )
        limits = PickLimits(
            max_actions=self.declare_parameter(
                "max_actions",
                _DEFAULTS.max_actions,
                "give up after this many grasps and pushes",
                read_only=True,
            ),
            max_failures=self.declare_parameter(
                "max_failures", _DEFAULTS.max_failures, "give up after this many in a row", read_only=True
            ),
            clear_frames=self.declare_parameter(
                "clear_frames", _DEFAULTS.clear_frames, "frames without objects = table clear", read_only=True
            ),
            max_pushes=self.declare_parameter(
                "max_pushes", _DEFAULTS.max_pushes, "pushes in a row without a grasp", read_only=True
            ),
        )
        self.exit_when_done = self.declare_parameter(
            "exit_when_done", True, "exit when the loop ends", read_only=True
        )
        self.client = self.create_client(service, ExecuteGrasp, GraspResult)
        self.push_client = self.create_client(push_service, ExecutePush, PushResult) if push_service else None
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
        pushing = self.push_client is not None
        choice = self.policy.choose(
            msg.positions,
            msg.closings,
            msg.rejected_reasons,
            msg.push_starts if pushing else None,
            msg.push_ends if pushing else None,
        )
        if choice is not None:
            if choice.kind == GRASP:
                self.attempt(msg, choice.index)
            else:
                self.push(msg, choice.index)
        if self.policy.done:
            self.finish(self.policy.ended)

    def attempt(self, msg: Grasps, choice: int) -> None:
        pose = Pose(tuple(msg.positions[choice]), tuple(msg.orientations[choice]))  # type: ignore[arg-type]
        width = float(msg.widths[choice])
        try:
            result = self.client.call(ExecuteGrasp(pose=pose, width=width, place=True), timeout_s=120)
            success, reason, done_stamp = result.success and result.placed, result.reason, result.done_stamp
        except ServiceUnavailable as exc:  # the arm is not up yet: not an attempt; try on the next frame
            self._arm_missing(exc)
            return
        except PerceptError as exc:  # a timeout or a failed call: an attempt that failed
            success, reason, done_stamp = False, str(exc), 0
        self.waiting_for_arm = False
        self.not_before_ns = done_stamp or msg.header.stamp  # a call that failed: at least not this frame
        self.policy.record(msg.positions[choice], msg.closings[choice], success)
        self._publish(
            msg, GRASP, pose, msg.class_names[choice], success, reason, width, float(msg.qualities[choice])
        )
        self.log.info(
            "attempt %d: %s at (%.3f, %.3f, %.3f), width %.1f cm: %s",
            self.policy.actions,
            msg.class_names[choice],
            *pose.position,
            width * 100,
            "picked and placed" if success else reason,
        )

    def push(self, msg: Grasps, choice: int) -> None:
        assert self.push_client is not None  # the policy is offered pushes only with a push service
        start, end = tuple(msg.push_starts[choice]), tuple(msg.push_ends[choice])
        try:
            result = self.push_client.call(ExecutePush(start=start, end=end), timeout_s=120)  # type: ignore[arg-type]
            success, reason, done_stamp = result.success, result.reason, result.done_stamp
        except ServiceUnavailable as exc:
            self._arm_missing(exc)
            return
        except PerceptError as exc:
            success, reason, done_stamp = False, str(exc), 0
        self.waiting_for_arm = False
        self.not_before_ns = done_stamp or msg.header.stamp
        self.policy.record_push(msg.push_starts[choice], msg.push_ends[choice])
        name = msg.push_class_names[choice]
        self._publish(
            msg,
            "push",
            Pose(start),
            name,
            success,
            reason,
            0.0,
            float(msg.push_qualities[choice]),
            end,  # type: ignore[arg-type]
        )
        self.log.info(
            "action %d: pushed %s from (%.3f, %.3f, %.3f) to (%.3f, %.3f, %.3f): %s",
            self.policy.actions,
            name,
            *start,
            *end,
            reason,
        )

    def _arm_missing(self, exc: ServiceUnavailable) -> None:
        """The arm is not up yet: not an action; try again on the next frame."""
        if not self.waiting_for_arm:
            self.log.warning("%s; waiting for it", exc)
        self.waiting_for_arm = True

    def _publish(
        self,
        msg: Grasps,
        action: str,
        pose: Pose,
        class_name: str,
        success: bool,
        reason: str,
        width: float,
        quality: float,
        push_end: tuple[float, float, float] = (0.0, 0.0, 0.0),
    ) -> None:
        self.publisher.publish(
            PickAttempt(
                header=Header(stamp=msg.header.stamp, frame_id="world"),
                attempt=self.policy.actions,
                class_name=class_name,
                pose=pose,
                width=width,
                quality=quality,
                success=success,
                reason=reason,
                action=action,
                push_end=push_end,
            )
        )

    def finish(self, why: str) -> None:
        self.done = True
        seconds = time.monotonic() - (self.started or time.monotonic())
        pushes = f" and {self.policy.pushes} push(es)" if self.policy.pushes else ""
        self.summary = (
            f"pick loop done ({why}): {self.policy.successes} picked in {self.policy.attempts} attempts{pushes} "
            f"({self.policy.successes / max(self.policy.attempts, 1):.0%} success), {seconds:.1f} s"
        )
        self.log.info(self.summary)
        if self.exit_when_done:
            self.request_shutdown()


if __name__ == "__main__":
    run(PickLoop)
