"""The classes a consumer of detections (the tracker, the grasp planner) takes, by the names its detector
gives them: one model says `pedestrian`, a COCO export says `person`. A name the detections never carry
filters out a class without a word, so the filter keeps what it has seen and what it left out, to say
so. (Not a node: the leading underscore keeps it off the list of nodes that ship.)"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from perception.errors import ParameterError

MIN_FRAMES = 30  # frames before a listed class no detection carried is told (3 s at 10 frames/s)


class ClassFilter:
    """Which detections to take: those whose class name is in `classes` (all of them when it is
    empty). `keep` counts the names it sees and leaves out; `never_named` gives the names of `classes`
    that no detection has carried while others were left out, and `describe` says it in words."""

    def __init__(self, classes: Iterable[str]) -> None:
        names = list(classes)
        for name in names:
            # A number is a name too: a model without names metadata names its classes "0", "1", ...
            if isinstance(name, bool) or not isinstance(name, str | int) or name == "":
                raise ParameterError(f"parameter 'classes': expected class names, found {name!r}")
        self.classes = frozenset(str(name) for name in names)
        self.seen: set[str] = set()
        self.left_out: Counter[str] = Counter()
        self.frames = 0
        self._said: list[str] = []  # the names last said to be carried by no detection

    def keep(self, names: Sequence[str]) -> np.ndarray:
        """A mask over a frame's detections: True for those to track."""
        self.frames += 1
        self.seen.update(names)
        mask = np.array([not self.classes or name in self.classes for name in names], bool)
        self.left_out.update(name for name, kept in zip(names, mask, strict=True) if not kept)
        return mask

    def never_named(self) -> list[str]:
        """The names of `classes` that no detection has carried in MIN_FRAMES frames or more while the
        filter left other names out (before, the detector may just not have met one; after, it may call
        that class by another name: a table without a cup for a few seconds is told too, as a question)."""
        return sorted(self.classes - self.seen) if self.left_out and self.frames >= MIN_FRAMES else []

    def news(self) -> str:
        """describe(), when what never_named() gives has changed since the last call ("" otherwise): to
        be said once, and again only if it changes."""
        unnamed = self.never_named()
        said, self._said = self._said, unnamed
        return self.describe() if unnamed and unnamed != said else ""

    def describe(self) -> str:
        """What `never_named` means, with the names the detections do carry ("" when nothing is amiss)."""
        missing = self.never_named()
        if not missing:
            return ""
        left_out = ", ".join(f"{name} ({count})" for name, count in self.left_out.most_common())
        kept = sorted(self.seen & self.classes)
        return (
            f"classes: {', '.join(missing)} named by no detection in {self.frames} frames, while the filter "
            f"left out {left_out}" + (f" and kept {', '.join(kept)}" if kept else "") + ": does the detector "
            "call it otherwise? classes takes the detector's own names (its model's names metadata, or its "
            "labels or class_map)"
        )
