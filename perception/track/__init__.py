"""Multi-object tracking: a library (no ZeroMQ) from per-frame detections to tracks with identities."""

from perception.track.tracker import ByteTracker, Track, TrackerParams, TrackState

__all__ = ["ByteTracker", "Track", "TrackState", "TrackerParams"]
