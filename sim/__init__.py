"""sim: PyBullet simulator nodes: a tabletop scene with a Franka Panda, and a driving scene."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Iterator

_libc = ctypes.CDLL(None)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence C-level output on stdout and stderr: PyBullet prints banners ('pybullet build time',
    'argv[0]=', EGL vendor lines, '?' per mesh) that would interleave with a node's logs."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        # C's stdout is block-buffered into a pipe: flush it while it still points at /dev/null.
        _libc.fflush(None)
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


from perception.installed import require  # noqa: E402  (the hint for a missing extra)

with quiet():  # imported once here, quietly: it prints its build time on import
    require("pybullet", "the simulator")
