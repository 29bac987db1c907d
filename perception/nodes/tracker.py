"""The tracker node: detections in (every frame, in order: tracking needs them all), tracks out, stamped
like their detections; with camera info of the same stamp, ground-plane position, distance, speed and
time to collision per track (detections that arrive before their camera info wait for it, up to
`pair_wait_s`). `~/stats` (TrackerStats) once a second.
"""

from __future__ import annotations

import math
import time

import numpy as np

from perception import Node, run
from perception.geometry import pose_matrix
from perception.msgs import CameraInfo, Detections, TrackerStats, Tracks
from perception.nodes._class_filter import ClassFilter
from perception.nodes._pairing import detections_paired_with, hand_on_held
from perception.nodes._reporting import NewCounts
from perception.runtime.sync import StampBuffer
from perception.track import ByteTracker, TrackerParams
from perception.track.ground import GroundHistory, ground_points, road_unseen

# The tracker's parameters a launch file may set, with their descriptions (defaults: TrackerParams).
TUNABLE = {
    "high_score": "first-stage score",
    "low_score": "weakest detection used",
    "new_track_score": "score that starts a track",
    "match_iou": "least IoU to match",
    "confirm_hits": "frames before a track is confirmed",
    "max_lost_s": "keep lost tracks (s)",
    "velocity_noise": "velocity change per 0.1 s, relative to box size",
    "gate_sigmas": "widen track boxes by this many standard deviations of their centre; 0: off",
    "buffer": "grow boxes by this share of their size per 0.1 s before IoU",
    "filtered_boxes": "report the filter's box, not the newest detection",
    "occluded_width_ratio": "narrower share of a track's box read as partly hidden; 0: off",
    "reentry_gap_heights": "lost tracks take back detections this many heights beside; 0: off",
    "class_aware": "match within a class only",
}


class TrackerNode(Node):
    """Give detections persistent identities (ByteTrack-style), with motion and distance."""

    def __init__(self) -> None:
        super().__init__("tracker")
        defaults = TrackerParams()
        self.tracker = ByteTracker(
            TrackerParams(
                **{
                    name: self.declare_parameter(name, getattr(defaults, name), description, read_only=True)
                    for name, description in TUNABLE.items()
                }
            )
        )
        self.class_filter = ClassFilter(
            self.declare_parameter(
                "classes", [], "track only these classes (the detector's names); empty: all", read_only=True
            )
        )
        self.ground_z = self.declare_parameter(
            "ground_z", 0.0, "height of the road in the world (m)", read_only=True
        )
        tolerance = self.declare_parameter(
            "tolerance_s", 0.02, "max stamp gap to pair camera info", read_only=True
        )
        self.infos: StampBuffer[CameraInfo] = StampBuffer(10, tolerance)
        self.grounds: dict[int, GroundHistory] = {}
        self.sync = detections_paired_with(
            self, [(CameraInfo, "camera_info", self.infos)], self.on_detections
        )
        self.publisher = self.create_publisher(Tracks, "tracks")
        self.stats_publisher = self.create_publisher(TrackerStats, "~/stats")
        self.create_timer(1.0, self.publish_stats)
        self.update_ms: list[float] = []
        self.confirmed = 0
        self.resets = 0
        self.invalid = NewCounts(self.log, "detections with a NaN or infinite number or a box of no size")
        self.without_info = 0  # frames with tracks but no camera info near their stamp, once some came
        self.unmeasured = NewCounts(
            self.log, "frames' distances: no camera info within tolerance_s of their stamp"
        )
        self.road_unseen_said = False  # said since the pose last saw the road
        self.window_start = time.monotonic()

    def on_shutdown(self) -> None:
        hand_on_held(self, self.sync)

    def on_detections(self, msg: Detections) -> None:
        last = self.tracker.last_stamp_s
        if last is not None and msg.header.stamp_s < last:
            # A replay looped or the simulator was reset: the tracks belong to a past that is gone. Start
            # over, as tf2 clears its buffer when time jumps back, rather than refuse every frame.
            self.log.warning(
                "detections stamped %.3f s, before the last frame's %.3f s: time went back; tracks reset",
                msg.header.stamp_s,
                last,
            )
            self.tracker.reset(restart_ids=False)
            self.grounds = {}
            self.resets += 1
        keep = self.class_filter.keep(msg.class_names)
        start = time.perf_counter()
        tracks = self.tracker.update(
            msg.xyxy[keep], msg.scores[keep], msg.class_ids[keep], msg.header.stamp_s
        )
        self.update_ms.append((time.perf_counter() - start) * 1000)
        self.confirmed = len(tracks)
        names = dict(zip(msg.class_ids.tolist(), msg.class_names, strict=True))
        n = len(tracks)
        positions = np.full((n, 3), np.nan)
        distances, speeds, ttc = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
        info = self.infos.nearest(msg.header.stamp)
        boxes = np.array([t.box for t in tracks]).reshape(-1, 4)
        if info is None and n and self.infos.messages:
            self.without_info += 1
        if info is not None and n:
            pose = pose_matrix(info.pose.position, info.pose.orientation)
            points = ground_points(boxes, info.K, pose, self.ground_z)
            if np.isnan(points).any() or self.road_unseen_said:  # until the pose sees the road again
                self.say_road_unseen(info)
            for i, (track, point) in enumerate(zip(tracks, points, strict=True)):
                if np.isnan(point).any():
                    continue
                motion = self.grounds.setdefault(track.id, GroundHistory()).update(
                    msg.header.stamp_s, point, pose[:3, 3]
                )
                positions[i], distances[i], speeds[i] = motion.position, motion.distance, motion.speed
                ttc[i] = motion.time_to_collision
        alive = {t.id for t in self.tracker.tracks}
        self.grounds = {k: v for k, v in self.grounds.items() if k in alive}
        now = msg.header.stamp_s
        self.publisher.publish(
            Tracks(
                header=msg.header,
                ids=np.array([t.id for t in tracks], np.int64),
                class_ids=np.array([t.class_id for t in tracks], np.int32),
                class_names=[names.get(t.class_id, str(t.class_id)) for t in tracks],
                xyxy=boxes.astype(np.float32),
                scores=np.array([t.score for t in tracks], np.float32),
                velocities=np.array([t.velocity for t in tracks], np.float32).reshape(-1, 2),
                ages_s=np.array([t.age_s(now) for t in tracks], np.float32),
                ground_positions=positions,
                distances=distances.astype(np.float32),
                speeds=speeds.astype(np.float32),
                times_to_collision=ttc.astype(np.float32),
            )
        )

    def say_road_unseen(self, info: CameraInfo) -> None:
        """A camera given no pose (camera_detect's position and orientation left as they are) stands on
        the road looking up: every distance was NaN, and nothing said why. Said once, and again only
        after a pose that sees the road (a pose that drifts a little must not repeat it every frame)."""
        why = road_unseen(pose_matrix(info.pose.position, info.pose.orientation), self.ground_z)
        if why and not self.road_unseen_said:
            self.log.warning(
                "tracks get no distance where their boxes meet no road: in camera_info's pose, at %s, %s "
                "(ground_z %g m); place the camera "
                "with its node's position:= and orientation:= (its optical frame in the world, z up)",
                tuple(round(float(x), 2) for x in info.pose.position),
                why,
                self.ground_z,
            )
        self.road_unseen_said = bool(why)

    def publish_stats(self) -> None:
        self.invalid.say(self.tracker.invalid_detections)
        self.unmeasured.say(self.without_info)
        if news := self.class_filter.news():
            self.log.warning("%s", news)
        times = sorted(self.update_ms)
        elapsed = time.monotonic() - self.window_start

        def percentile(q: float) -> float:
            return times[min(len(times) - 1, math.floor(q * len(times)))] if times else 0.0

        self.stats_publisher.publish(
            TrackerStats(
                header=self.header(),
                tracks_alive=len(self.tracker.tracks),
                tracks_confirmed=self.confirmed,
                update_p50_ms=percentile(0.5),
                update_p95_ms=percentile(0.95),
                frames_per_s=len(times) / elapsed,
                resets=self.resets,
            )
        )
        self.update_ms = []
        self.window_start = time.monotonic()


if __name__ == "__main__":
    run(TrackerNode)
