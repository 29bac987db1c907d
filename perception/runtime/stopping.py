"""Stopping on SIGINT and SIGTERM without deadlocks.

A signal handler runs between two bytecodes of the main thread, and a second signal can run it again
inside the first run. `threading.Event.set()` takes a lock, so a second handler landing inside the
first one's `set()` waits on that lock forever. It happens: a launcher killed with SIGKILL sends its
nodes one parent-death SIGTERM for each of its threads that exits, microseconds apart.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopFlag:
    """A stop request that is safe to raise from a signal handler: setting it takes no lock. Whoever
    waits for it polls it, as every loop here does anyway (a node's spin wakes at least every 0.1 s)."""

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


@contextmanager
def stop_signals_call(request_stop: Callable[[], None]) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM call `request_stop` (which must take no lock); the handlers
    from before come back after it."""
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda signum, frame: request_stop())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
