"""What nodes report alike. A count a node's core keeps growing (rows it left out, say), told in the
node's log: what is new since it last spoke, once a stats period at most, so a stream of bad input is
neither silent nor a log flood. A camera node's source, on its `~/stats` topic. (Not a node: the leading
underscore keeps it off the list of nodes that ship, `percept run NAME`.)"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from perception import Node
from perception.msgs import CameraStats

if TYPE_CHECKING:  # a type only: the detector and tracker nodes, which import this too, need no OpenCV
    from perception.camera.source import SourceStatus


class NewCounts:
    def __init__(self, log: logging.Logger, what: str) -> None:
        self.log, self.what, self.said = log, what, 0

    def say(self, total: int) -> None:
        if total > self.said:
            self.log.warning("left out %d %s (%d in all)", total - self.said, self.what, total)
            self.said = total


class SourceReport:
    """A camera node's `~/stats`: its source's status, and the frames per second since the last report
    (the colour camera and the depth camera publish the same CameraStats)."""

    def __init__(self, node: Node, source: str) -> None:
        self.node, self.source = node, source
        self.publisher = node.create_publisher(CameraStats, "~/stats")
        self._since = (time.monotonic(), 0)  # when the last report went out, and the frames by then

    def publish(self, status: SourceStatus) -> None:
        started, frames = self._since
        elapsed = max(time.monotonic() - started, 1e-3)
        self.publisher.publish(
            CameraStats(
                header=self.node.header(),
                source=self.source,
                connected=status.connected,
                frames_per_s=(status.frames - frames) / elapsed,
                frames=status.frames,
                failures=status.failures,
                reconnects=status.reconnects,
                last_error=status.last_error,
                skipped=status.skipped,
                ended=status.ended,
            )
        )
        self._since = (time.monotonic(), status.frames)
