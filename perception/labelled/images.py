"""A labelled set's image read as RGB, or refused in one line naming the set and what is wrong with it
(no such file, bytes OpenCV does not read as an image). A JPEG without its end marker is read as far as
it goes and said, naming it: OpenCV's own warning names no file. (Ultralytics does the same, and
rewrites the file; phones that append data after the marker make such files whole as well.)"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from perception.errors import PerceptError

JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"  # a JPEG's first and last markers


def read_rgb(path: Path, where: str) -> np.ndarray:
    """`where` names the set ("dataset data.yaml") for the error."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PerceptError(f"{where}: cannot read image {path}: {exc.strerror or exc}") from None
    if data.startswith(JPEG_START) and not data.rstrip(b"\x00").endswith(JPEG_END):
        warn_once(
            f"{where}: image {path}: a JPEG without its end marker (cut short?), read as far as it goes"
        )
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if bgr is None and data.startswith(JPEG_START):  # decoding from memory refuses what is cut short
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise PerceptError(
            f"{where}: image {path}: expected an image OpenCV reads, found {len(data)} bytes it does not"
        )
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


_warned: set[str] = set()


def warn_once(text: str) -> None:
    """A set is read more than once a command (its labels checked, then its frames): say it once."""
    if text not in _warned:
        _warned.add(text)
        print(f"percept: warning: {text}", file=sys.stderr)
