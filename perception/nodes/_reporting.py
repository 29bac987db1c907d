"""A count a node's core keeps growing (rows it left out, say), told in the node's log: what is new since
it last spoke, once a stats period at most, so a stream of bad input is neither silent nor a log flood.
(Not a node: the leading underscore keeps it off the list of nodes that ship, `percept run NAME`.)"""

from __future__ import annotations

import logging


class NewCounts:
    def __init__(self, log: logging.Logger, what: str) -> None:
        self.log, self.what, self.said = log, what, 0

    def say(self, total: int) -> None:
        if total > self.said:
            self.log.warning("left out %d %s (%d in all)", total - self.said, self.what, total)
            self.said = total
