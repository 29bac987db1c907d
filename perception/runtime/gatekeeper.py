"""The door of every process of a graph: how long a peer may take to get in, who gets in, and how
many were turned away, counted and told.

Every socket a process binds (a publisher's, a service's, the registry's) takes connections from any
process that can reach its address, before knowing who it is; each costs the process an open file
until it is closed. So every process raises its limit of open files (`raise_open_file_limit`), and
the `Gatekeeper` of its ZeroMQ context makes each socket that binds close a connection that has not
completed its handshake within HANDSHAKE_TIMEOUT_S, answers ZAP (with a keystore: lets in the CURVE
keys of the keystore's public/, nothing else), and counts every connection refused: a key not in the
keystore, a peer without CURVE, a broken or unfinished handshake. A process logs its refusals at most
once a second, with the count since its last line, and a node reports the total in its stats
(`refused_connections`), so that a flood of attempts is seen without filling the log.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import math
import os
import queue
import resource
import threading
import time
from typing import Any

import zmq
from zmq.utils import z85
from zmq.utils.monitor import recv_monitor_message

from perception.runtime.security import Keys
from perception.runtime.stats import Throttle

log = logging.getLogger("percept.gatekeeper")

# The open files (sockets) a process may hold, or its hard limit where that is lower. The usual soft
# limit, 1024, let one local process that opened 1,101 idle TCP connections to the registry take every
# descriptor it had (the security audit of 2026-12): the registry could accept no node, not even a
# respawned camera, until the connections went. An idle connection costs the kernel a few KiB: 65536
# of them, under 1 GiB, where 1024 cost nothing to take.
MAX_OPEN_FILES = 65536

# How long a peer that connected to a socket that binds has to complete its ZeroMQ handshake (ZMTP's
# greeting, and with a keystore CURVE's four commands and the ZAP handler's answer; libzmq's
# ZMQ_HANDSHAKE_IVL, 30 s by default, applies to plain greetings too), after which the connection is
# closed and counted as refused: a peer that connects and sends nothing holds an open file this long.
# A CURVE handshake with our ZAP handler took 1.2-1.8 ms at the median and 72 ms at most, of 400 a run
# on this 2-core machine, with both cores kept busy and a thread of the server holding the GIL whenever
# it could (docs/security.md). 3 s is 40 times that, and room for a C extension that holds the GIL a
# second or two (pybullet stepping a scene): a handshake it outlasts is retried, not lost.
HANDSHAKE_TIMEOUT_S = 3.0

LOG_PERIOD_S = 1.0  # refusals are logged at most this often, with the count since the last line
OPEN_FILES_PROBE_S = 1.0  # how often the gatekeeper checks that the process can still open a file
STILL_AT_LIMIT_S = 10.0  # while it cannot, it says so again this often (a flood lasts as long as it likes)
MAX_KINDS_A_LINE = 4  # the largest groups of refusals a line names; the others are counted together
ZAP_ENDPOINT = "inproc://zeromq.zap.01"  # where libzmq asks (RFC 27)
MAX_ZAP_DOMAIN = 255  # bytes libzmq takes in ZMQ_ZAP_DOMAIN
MONITOR_QUEUE = 20_000  # events a socket's monitor holds for the gatekeeper (about 3 MiB at most)
READ_AT_ONCE = 1000  # ZAP requests or events read from one socket before the thread's other work

# What the monitor of a socket that binds reports. A refused key is counted by the ZAP handler, which
# knows the peer's address (ZMQ_EVENT_HANDSHAKE_FAILED_AUTH would count it twice). Accept failures
# are left out: on EMFILE libzmq retries the accept at once, reporting each failure (460,000 events a
# second here), and an event it cannot hand over stops the process's I/O thread until it is read. The
# gatekeeper looks at the open files itself instead (_check_open_files).
_WATCHED = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_MONITOR_STOPPED
)
_monitor_ids = itertools.count(1)


def raise_open_file_limit() -> int:
    """Raise this process's soft limit of open files to MAX_OPEN_FILES, or to its hard limit where that
    is lower (a process may raise its own up to it); the soft limit in force after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = MAX_OPEN_FILES if hard == resource.RLIM_INFINITY else min(MAX_OPEN_FILES, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (OSError, ValueError):  # a sandbox that forbids it: the limit stays, which worked before
            return soft
        return wanted
    return soft


def refusal_reason(kind: str, keys: Keys | None) -> str:
    """What a refusal of `kind` means, as a log line says it after "N to SOCKET"."""
    if kind == "key":
        where = keys.keystore / "public" if keys is not None else "the keystore's public/"
        return f"with a CURVE key not in {where}/"
    if kind == "mechanism":
        return "without CURVE" if keys is not None else "with CURVE, which this process does not use"
    if kind == "timeout":
        return f"that did not complete a handshake within {HANDSHAKE_TIMEOUT_S:g} s (or hung up during it)"
    if kind == "cryptographic":
        return "whose CURVE handshake did not decrypt (a client with another key for this socket?)"
    return f"that broke the ZeroMQ handshake ({kind})"


class Gatekeeper:
    """Guards the sockets one ZeroMQ context binds, from a thread of its own: answers the ZAP requests
    of CURVE handshakes (with a keystore), reads the monitors of the sockets it guards, counts every
    connection refused (`refused`), logs them at most once a second, and checks once a second that the
    process can still open a file (it logs when it cannot: it then accepts no connection)."""

    def __init__(self, context: zmq.Context[Any], keys: Keys | None) -> None:
        raise_open_file_limit()  # every process that binds a socket has a gatekeeper: here, once for all
        # A guarded socket takes two more of the context's sockets (libzmq's monitor and its reader), so
        # libzmq's default of 1,023 sockets a context held a third as many publishers (341), failing
        # with "Too many open files". Raised as the open files are; set before the context's first socket.
        context.set(zmq.MAX_SOCKETS, min(MAX_OPEN_FILES, context.get(zmq.SOCKET_LIMIT)))
        self.keys = keys
        self.refused = 0  # connections refused, total (read by the node's stats)
        self._context = context
        self._lock = threading.Lock()
        self._unlogged: dict[tuple[str, str], int] = {}  # (socket, kind) -> refusals since the last line
        self._addresses: dict[tuple[str, str], set[str]] = {}  # peers of refused keys, a few
        self._unlogged_since = 0.0  # wall-clock time of the first refusal not yet logged
        self._logged_at = -math.inf
        self._guarded: list[str] = []
        self._new: queue.SimpleQueue[tuple[zmq.Socket[Any], str]] = queue.SimpleQueue()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)
        os.set_blocking(self._wake_read, False)
        self._stopping = threading.Event()
        self._zap: zmq.Socket[Any] | None = None
        if keys is not None:
            # Bound before any socket binds: a CURVE server that finds no ZAP handler lets every key in.
            self._zap = context.socket(zmq.REP)
            self._zap.setsockopt(zmq.LINGER, 0)
            self._zap.bind(ZAP_ENDPOINT)
        self._thread = threading.Thread(target=self._run, name="percept-gatekeeper", daemon=True)
        self._thread.start()

    def guard(self, socket: zmq.Socket[Any], what: str) -> None:
        """Make a socket that binds (call it before it binds, on the socket's own thread) close
        connections whose handshake takes over HANDSHAKE_TIMEOUT_S, serve CURVE with a keystore, and
        count its refused connections as `what`'s ("publisher /camera/image")."""
        socket.setsockopt(zmq.HANDSHAKE_IVL, int(HANDSHAKE_TIMEOUT_S * 1000))
        if self.keys is not None:
            self.keys.serve(socket)
            socket.setsockopt(zmq.ZAP_DOMAIN, what.encode()[:MAX_ZAP_DOMAIN])  # names it to the handler
        address = f"inproc://percept-gatekeeper-{os.getpid()}-{next(_monitor_ids)}"
        socket.monitor(address, _WATCHED)
        # Connected here, at once: libzmq's I/O thread waits on an event it cannot hand over (no reader,
        # or a full queue), and every connection of the process with it. The queue holds a burst of
        # MONITOR_QUEUE events (a flood of 14,000 refusals a second was read as it came, here) while a
        # callback keeps the GIL from the gatekeeper's thread.
        reader = self._context.socket(zmq.PAIR)
        reader.setsockopt(zmq.LINGER, 0)
        reader.setsockopt(zmq.RCVHWM, MONITOR_QUEUE)
        reader.connect(address)
        self._new.put((reader, what))  # the gatekeeper's thread owns it from here
        self._wake()

    def stop(self) -> None:
        """End the thread and its sockets. Close the sockets it guards first, and destroy the context
        after: an event of a guarded socket that finds no reader holds libzmq's I/O thread. A second
        call does nothing; the wake-up pipe is closed only once the thread has ended (its numbers
        would otherwise be reused while the thread still reads or writes them)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._wake()
        self._thread.join(timeout=5.0)
        if self._thread.is_alive():
            log.warning("the gatekeeper's thread did not end within 5 s; its sockets close with the context")
            return
        for fd in (self._wake_read, self._wake_write):
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- the thread --------------------------------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):  # a byte is waiting already; or stopped
            os.write(self._wake_write, b"\0")

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._wake_read, zmq.POLLIN)
        if self._zap is not None:
            poller.register(self._zap, zmq.POLLIN)
        monitors: dict[zmq.Socket[Any], str] = {}
        at_limit_since: float | None = None
        said_at = 0.0
        next_probe = time.monotonic()
        failure_log = Throttle(LOG_PERIOD_S)
        try:
            while not self._stopping.is_set():
                due = min(next_probe, self._logged_at + LOG_PERIOD_S if self._unlogged else math.inf)
                timeout_ms = max(0, int((due - time.monotonic()) * 1000) + 1)
                try:
                    ready = dict(poller.poll(timeout_ms))
                    if self._wake_read in ready:
                        with contextlib.suppress(BlockingIOError):
                            os.read(self._wake_read, 4096)
                        while not self._new.empty():
                            reader, what = self._new.get()
                            monitors[reader] = what
                            self._guarded.append(what)
                            poller.register(reader, zmq.POLLIN)
                    if self._zap is not None and self._zap in ready:
                        self._answer(self._zap)
                    for reader, what in list(monitors.items()):
                        if reader in ready and not self._read_monitor(reader, what):
                            poller.unregister(reader)
                            reader.close()
                            del monitors[reader]
                    now = time.monotonic()
                    if self._unlogged and now - self._logged_at >= LOG_PERIOD_S:
                        self._log_refusals(now)
                    if now >= next_probe:
                        next_probe = now + OPEN_FILES_PROBE_S
                        at_limit_since, said_at = self._check_open_files(at_limit_since, said_at, now)
                except Exception:  # unanswered, ZAP would keep every peer out and monitors stop I/O
                    if failure_log.ready():
                        log.exception("the gatekeeper failed a step; it goes on")
                    time.sleep(0.1)
        finally:
            if self._unlogged:  # the last second's refusals, told before the process goes
                self._log_refusals(time.monotonic())
            for reader in monitors:
                reader.close()
            while not self._new.empty():
                self._new.get()[0].close()
            if self._zap is not None:
                self._zap.close()

    def _answer(self, zap: zmq.Socket[Any]) -> None:
        """Answer the ZAP requests waiting (RFC 27): a CURVE client whose key is in the keystore gets in,
        with its key as its User-Id (the registry files a node under it); anything else is refused."""
        assert self.keys is not None
        for _ in range(READ_AT_ONCE):  # then the thread's other work (a steady flood must not starve it)
            try:
                frames = zap.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            request_id = frames[1] if len(frames) > 1 else b""
            if len(frames) < 6 or frames[0] != b"1.0":  # not from libzmq; a REP socket must answer all
                zap.send_multipart([b"1.0", request_id, b"400", b"malformed ZAP request", b"", b""])
                continue
            domain, address, mechanism, credentials = frames[2], frames[3], frames[5], frames[6:]
            key = credentials[0] if mechanism == b"CURVE" and len(credentials) == 1 else b""
            user = z85.encode(key).decode("ascii") if len(key) == 32 else ""
            if user and self.keys.enclave_of(user) is not None:
                zap.send_multipart([b"1.0", request_id, b"200", b"OK", user.encode("ascii"), b""])
                continue
            zap.send_multipart([b"1.0", request_id, b"400", b"key not in the keystore", b"", b""])
            self.count(domain.decode(errors="replace") or "a socket", "key", address.decode(errors="replace"))

    def _read_monitor(self, reader: zmq.Socket[Any], what: str) -> bool:
        """Count the failed handshakes a socket's monitor reports; False once the socket has closed."""
        for _ in range(READ_AT_ONCE):
            try:
                event = recv_monitor_message(reader, zmq.NOBLOCK)
            except zmq.Again:
                return True
            kind = event["event"]
            if kind == zmq.EVENT_MONITOR_STOPPED:
                with contextlib.suppress(ValueError):
                    self._guarded.remove(what)  # named no more where the process is at its limit
                return False
            if kind == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
                self.count(what, "timeout")
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
                self.count(what, _protocol_kind(event["value"]))
        return True  # more may wait: read at the next turn

    def count(self, what: str, kind: str, address: str = "") -> None:
        """One connection to `what` refused (`kind`: see refusal_reason); logged within a second."""
        with self._lock:
            self.refused += 1
            group = (what, kind)
            if not self._unlogged:
                self._unlogged_since = time.time()
            self._unlogged[group] = self._unlogged.get(group, 0) + 1
            if address and len(peers := self._addresses.setdefault(group, set())) < 3:
                peers.add(address)
        self._wake()

    def _log_refusals(self, now: float) -> None:
        with self._lock:
            groups, self._unlogged = self._unlogged, {}
            addresses, self._addresses = self._addresses, {}
            since = self._unlogged_since
        self._logged_at = now
        log.warning("%s", refusals_line(groups, addresses, since, self.keys))

    def _check_open_files(
        self, since: float | None, said_at: float, now: float
    ) -> tuple[float | None, float]:
        """Whether the process can open one more file (an accept needs one), said when it first cannot,
        again every STILL_AT_LIMIT_S while it lasts, and when it can again."""
        try:
            os.close(os.dup(self._wake_read))
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            whose = "this process's limit" if exc.errno == errno.EMFILE else "the system's limit"
            if since is None or now - said_at >= STILL_AT_LIMIT_S:
                held = f" for {now - since:.0f} s" if since is not None else ""
                log.error(
                    "cannot accept connections to %s: too many open files (%s, %d, reached%s; a peer "
                    "holding connections open?)",
                    ", ".join(self._guarded[:3]) or "its sockets",
                    whose,
                    limit,
                    held,
                )
                return (now if since is None else since), now
            return since, said_at
        if since is not None:
            log.warning("accepting connections again: open files below the limit after %.0f s", now - since)
        return None, said_at


def _protocol_kind(code: int) -> str:
    if code == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        return "mechanism"
    if code == zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
        return "cryptographic"
    return f"protocol error {code:#x}"


def refusals_line(
    groups: dict[tuple[str, str], int],
    addresses: dict[tuple[str, str], set[str]],
    since: float,
    keys: Keys | None,
) -> str:
    """One line for the refusals since the last: "refused 12 connections since 10:04:05: 10 to the
    registry with a CURVE key not in keys/public/ (from 127.0.0.1); 2 to ..."."""
    total = sum(groups.values())
    ranked = sorted(groups.items(), key=lambda item: -item[1])
    parts = []
    for (what, kind), count in ranked[:MAX_KINDS_A_LINE]:
        peers = sorted(addresses.get((what, kind), ()))
        source = f" (from {', '.join(peers)})" if peers else ""
        parts.append(f"{count} to {what} {refusal_reason(kind, keys)}{source}")
    rest = sum(count for _, count in ranked[MAX_KINDS_A_LINE:])
    if rest:
        parts.append(f"{rest} more to other sockets")
    clock = time.strftime("%H:%M:%S", time.localtime(since))
    return f"refused {total} connection{'s' if total != 1 else ''} since {clock}: " + "; ".join(parts)
