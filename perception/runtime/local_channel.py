"""The same-host path between a publisher and its subscribers: a named pipe per subscription, shared
memory for large messages.

Each subscription has a pipe in /dev/shm; each publisher has one for registrations. A subscriber that
learns from the registry that a publisher is on its host (same boot id, and the publisher's pipe is
visible, so /dev/shm is shared) registers through the publisher's pipe instead of connecting over TCP.
From then on the publisher writes one record per message into the subscriber's pipe: the message itself
when it fits in one atomic pipe write (4 KiB), or else where it lies in a shared-memory slot
(perception.runtime.shm). One ordered channel per pair, so sequence numbers and drop counts mean what
they mean on TCP, and the subscriber's executor wakes on the pipe as on a socket.

A pipe write of up to PIPE_BUF bytes is atomic, so several publishers can share one subscriber's pipe;
a full pipe (a subscriber that stopped reading) refuses the record, which that subscriber later sees as
a sequence gap, as it would when a TCP queue overflows. A subscriber that died is found by the broken
pipe the next write meets, or, when no write reaches it, by its name's process (once a second).

No subscriber can stop the others: each may hold its share of a segment's slots (the segment's header
says how many: together the subscribers leave one free); a message that would take it past its share is
copied into its own memory and its slot given back at once. A publisher with no row left for a new
subscriber says so (FULL), and that subscriber takes the publisher's messages over TCP.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import select
import struct
import time
from typing import Any

import numpy as np

from perception.runtime import shm, wire

log = logging.getLogger("percept.shm")

PIPE_BUF = getattr(select, "PIPE_BUF", 512)  # 4096 on Linux: the most one write delivers whole
_HEAD = struct.Struct("<HB")  # record length, kind
_INLINE_COUNT = struct.Struct("<I")
_COUNT = struct.Struct("<Q")  # frames in a slot's table
# row, slot, tick, the message's sequence number and size, its publisher id's length; then the
# publisher id and the segment's name. The sequence number travels outside the slot so that a message
# evicted or superseded before it is read still counts as the keep-last queue counts it on TCP.
_SLOT = struct.Struct("<HIQQQB")
INLINE, SLOT, REGISTER, BYE, FULL = 1, 2, 3, 4, 5
_READ_CHUNK = 1 << 16
_HOUSEKEEPING_S = 1.0
PIPE_SIZE = 1 << 20  # bytes a subscription's pipe may hold (Linux's default is 64 KiB)
LINGER_S = 1.0  # how long a closing publisher waits for its subscribers to read their pipes
_REGISTRATIONS_S = 0.01  # a new subscriber's first message waits at most this long


class Frame:
    """A received frame, as zmq.Frame offers it (`buffer`, `bytes`, `len()`), over shared or private
    memory."""

    __slots__ = ("array",)

    def __init__(self, array: Any) -> None:
        self.array = array

    @property
    def buffer(self) -> memoryview:
        return memoryview(self.array)

    @property
    def bytes(self) -> bytes:
        return bytes(self.array)

    def __len__(self) -> int:
        return len(memoryview(self.array))


class LeasedFrames(list):  # type: ignore[type-arg]
    """A message's frames that lie in a publisher's shared-memory slot (holding it while they live)."""

    def detach(self) -> None:
        """Copy the frames into private memory, so the slot goes back to the publisher."""
        for i in range(1, len(self)):
            self[i] = Frame(bytes(self[i].array))


def _record(kind: int, body: bytes) -> bytes:
    return _HEAD.pack(_HEAD.size + len(body), kind) + body


def _records(data: bytes) -> tuple[list[tuple[int, memoryview]], bytes]:
    """Whole records in `data` as (kind, body), and the bytes of an incomplete last one."""
    view, offset = memoryview(data), 0
    found: list[tuple[int, memoryview]] = []
    while len(data) - offset >= _HEAD.size:
        length, kind = _HEAD.unpack_from(data, offset)
        if not _HEAD.size <= length <= PIPE_BUF:
            return found, b""  # not a record: drop what is left rather than read garbage forever
        if len(data) - offset < length:
            break
        found.append((kind, view[offset + _HEAD.size : offset + length]))
        offset += length
    return found, data[offset:]


def _path_from(body: memoryview) -> str | None:
    """A percept pipe's path from a registration record; None for anything else."""
    try:
        path = bytes(body).decode()
    except UnicodeDecodeError:
        return None
    name = path[len(shm.SHM_DIR) + 1 :]
    if not path.startswith(shm.SHM_DIR + "/" + shm.PREFIX) or "/" in name:
        return None
    return path


class _Peer:
    __slots__ = ("fd", "path", "row")

    def __init__(self, fd: int, path: str, row: int) -> None:
        self.fd, self.path, self.row = fd, path, row


class LocalOutlet:
    """A publisher's side: takes registrations, writes each message to every local subscriber."""

    def __init__(self) -> None:
        shm.sweep_once()
        self._budget = shm.budget_bytes()
        self.path = shm.new_path("pub")
        os.mkfifo(self.path, 0o600)
        self._fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)  # never sees end-of-file
        self.address = f"{shm.host_id()} {self.path}"
        self._peers: dict[str, _Peer] = {}
        self._leaving: dict[int, str] = {}  # rows of subscribers that said goodbye, maybe still holding
        self._refusing: dict[str, int] = {}  # pipes still to be told to go over TCP: path -> fd
        self._segment: shm.Segment | None = None
        self._retired: list[shm.Segment] = []
        self._tick = 0
        self._carry = b""
        self._housekeeping_at = 0.0
        self._registrations_at = 0.0
        self._rows: set[int] | None = None
        self.missed = 0  # deliveries to local subscribers that did not happen (full pipe, no free slot)
        self.no_room: str | None = None  # why shared memory was given up (a full /dev/shm), if it was
        self.malformed_registrations = 0  # leftovers in the registration pipe that were no record

    @property
    def peer_count(self) -> int:
        self._take_registrations()
        return len(self._peers)

    def send(self, frames: list[Any], src: str, n: int) -> int:
        """Deliver a message (frames after the topic; `src` and `n` as its header has them) to every
        local subscriber; the number of subscribers that missed it."""
        now = time.monotonic()
        self._take_registrations_when_due(now)
        if not self._peers:
            return 0
        if now > self._housekeeping_at:
            self._housekeeping()
        views = [wire.byte_view(f) for f in frames]
        sizes = [v.nbytes for v in views]
        inline = _HEAD.size + _INLINE_COUNT.size + 4 * len(sizes) + sum(sizes)
        if inline <= PIPE_BUF:
            body = b"".join([_INLINE_COUNT.pack(len(sizes)), struct.pack(f"<{len(sizes)}I", *sizes), *views])
            record = _record(INLINE, body)
            missed = sum(not self._write(peer, record) for peer in list(self._peers.values()))
        else:
            try:
                missed = self._send_in_slot(frames, views, sizes, src.encode()[:255], n)
            except shm.NoRoom as exc:
                missed = self._give_up(exc)
        self.missed += missed
        return missed

    def loan(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray | None:
        """A writable array in shared memory that a later send() passes on without copying it; None
        when there is no local subscriber (or no free slot): then any array does as well."""
        self._take_registrations_when_due(time.monotonic())
        if not self._peers:
            return None
        size = math.prod(shape) * dtype.itemsize
        try:
            segment = self._segment_for(shm.LOAN_OFFSET + size)
            return segment.loan(shape, dtype, self._live_rows())
        except shm.NoRoom as exc:
            self._give_up(exc)
            return None

    def _give_up(self, exc: shm.NoRoom) -> int:
        """/dev/shm is full: send every local subscriber to TCP, as when no row is left for it, and take
        no more; the number of subscribers that missed the message in hand. Shared memory stays off for
        this publisher until it restarts (said once)."""
        log.warning("shared memory: %s; the local subscribers of this topic go over TCP", exc)
        self.no_room = str(exc)
        peers = list(self._peers.values())
        for peer in peers:
            self._refuse(peer.fd, peer.path)
        self._peers.clear()
        self._rows = None
        # Its memory goes back once the subscribers let go of what they hold (they unmap a segment
        # whose file is gone); this side's mappings go now.
        for segment in (self._segment, *self._retired):
            if segment is not None:
                segment.close()
        self._segment, self._retired = None, []
        return len(peers)

    def _refuse(self, fd: int, path: str) -> None:
        """Tell a subscriber's pipe to take this publisher's messages over TCP, and close it; a pipe
        too full to take the word now (a slow subscriber) is told again at the next registrations' read,
        or it would wait for this publisher's messages for good."""
        try:
            os.write(fd, _record(FULL, self.path.encode()))
        except BlockingIOError:
            self._refusing[path] = fd
            return
        except OSError:
            pass  # its subscriber has gone
        os.close(fd)

    def _refuse_again(self) -> None:
        for path, fd in list(self._refusing.items()):
            del self._refusing[path]
            if shm.owner_alive(path):
                self._refuse(fd, path)
            else:
                os.close(fd)

    def _segment_for(self, slot_bytes: int) -> shm.Segment:
        segment = self._segment
        if segment is None or slot_bytes > segment.layout.slot_bytes:
            larger = shm.Segment(slot_bytes, self._budget)  # first: it may find no room (shm.NoRoom)
            if segment is not None:
                shm.remove(segment.path)  # new subscribers need only the new one
                self._retired.append(segment)
            segment = self._segment = larger
            segment.share_among(len(self._live_rows()))
        return segment

    def _send_in_slot(
        self, frames: list[Any], views: list[memoryview], sizes: list[int], src: bytes, n: int
    ) -> int:
        segment = self._segment
        slot = self._loaned_slot(segment, frames, views) if segment is not None and segment.loaned else None
        if slot is not None and segment is not None:
            self._tick += 1
            if not segment.write(slot[0], self._tick, views, loaned=slot[1]):
                slot = None  # the other frames do not fit before the loaned array: copy them all
        if slot is None or segment is None:
            segment = self._segment_for(shm.slot_size(sizes))
            free = segment.acquire(self._live_rows())
            if free is None:
                return len(self._peers)  # every slot is held by subscribers: nobody gets this one
            self._tick += 1
            segment.write(free, self._tick, views)
            slot = (free, -1)
        tail = src + segment.name.encode()
        n = n if 0 <= n <= wire.MAX_SEQUENCE else 0  # a number out of range: no gap counted
        total = sum(sizes)
        pending = segment.pending[slot[0]]
        missed = 0
        for peer in list(self._peers.values()):
            head = _SLOT.pack(peer.row, slot[0], self._tick, n, total, len(src))
            if self._write(peer, _record(SLOT, head + tail)):
                pending[peer.row] = self._tick
            else:
                missed += 1
        return missed

    @staticmethod
    def _loaned_slot(
        segment: shm.Segment, frames: list[Any], views: list[memoryview]
    ) -> tuple[int, int] | None:
        """(slot, frame index) of the first frame that is an array loaned from `segment` (the loaned
        array itself, or any array that starts where it does), taken out of the loans; None when no
        frame is."""
        for index, frame in enumerate(frames):
            loan = segment.loan_of(frame)  # the array itself: found without reading its address
            if loan is not None:
                return loan, index
        for index, view in enumerate(views):
            if view.nbytes >= shm.LOAN_OFFSET:  # a header or a small array is never a loan
                address = np.frombuffer(view, np.uint8).__array_interface__["data"][0]
                loan = segment.loan_at(address)
                if loan is not None:
                    return loan, index
        return None

    def _write(self, peer: _Peer, record: bytes) -> bool:
        try:
            os.write(peer.fd, record)
            return True
        except BlockingIOError:
            return False  # its pipe is full: it stopped reading
        except OSError:  # a broken pipe: the subscriber has gone
            self._remove(peer.path, gone=True)
            return False

    def _live_rows(self) -> set[int]:
        if self._rows is None:  # worked out again only when a subscriber comes or goes
            self._rows = {p.row for p in self._peers.values()} | set(self._leaving)
            if self._segment is not None:
                self._segment.share_among(len(self._rows))
        return self._rows

    def _take_registrations_when_due(self, now: float) -> None:
        """The registration pipe read at most every _REGISTRATIONS_S on the message path: a pipe read
        per message would cost more than the message, and a new subscriber waits that long at most."""
        if now > self._registrations_at:
            self._take_registrations()

    def _take_registrations(self) -> None:
        self._registrations_at = time.monotonic() + _REGISTRATIONS_S
        if self._refusing:
            self._refuse_again()
        while True:
            try:
                chunk = os.read(self._fd, _READ_CHUNK)
            except BlockingIOError:
                # The pipe is empty, and each writer writes a whole record at once: bytes left over are
                # no record's beginning (a foreign writer's), and kept they would garble every later one.
                if self._carry:
                    self.malformed_registrations += 1
                    self._carry = b""
                return
            except OSError:
                return
            records, self._carry = _records(self._carry + chunk)
            for kind, body in records:
                path = _path_from(body)
                if path is None:
                    continue
                if kind == REGISTER:
                    self._add(path)
                elif kind == BYE:
                    self._remove(path, gone=False)

    def _add(self, path: str) -> None:
        if path in self._peers:
            return
        used = self._live_rows()
        free = [r for r in range(shm.ROWS) if r not in used]
        try:
            fd = shm.open_own(path, os.O_WRONLY | os.O_NONBLOCK, "pipe")
        except OSError:
            return  # it went away again, or it is no pipe of ours
        if not free or self.no_room:  # no row left for it, or no memory: this one is told to use TCP
            self._refuse(fd, path)
            return
        self._peers[path] = _Peer(fd, path, free[0])
        self._rows = None

    def _remove(self, path: str, gone: bool) -> None:
        peer = self._peers.pop(path, None)
        if peer is None:
            return
        self._rows = None
        with contextlib.suppress(OSError):
            os.close(peer.fd)
        if gone or not shm.owner_alive(path):
            self._drop_row(peer.row)
        else:
            self._leaving[peer.row] = path  # its process may still hold frames of ours

    def _drop_row(self, row: int) -> None:
        self._leaving.pop(row, None)
        self._rows = None
        for segment in (self._segment, *self._retired):
            if segment is not None:
                segment.drop_row(row)

    def _housekeeping(self) -> None:
        """Free the rows of departed subscribers once they hold nothing (and of dead ones at once:
        killed while holding slots, they may meet no write that would find them), and close retired
        segments."""
        self._housekeeping_at = time.monotonic() + _HOUSEKEEPING_S
        for peer in list(self._peers.values()):
            if not shm.owner_alive(peer.path):
                self._remove(peer.path, gone=True)
        for row, path in list(self._leaving.items()):
            segments = [s for s in (self._segment, *self._retired) if s is not None]
            if not shm.owner_alive(path) or all(s.idle({row}) for s in segments):
                self._drop_row(row)
        live = self._live_rows()
        for segment in list(self._retired):
            if segment.idle(live):
                segment.close()
                self._retired.remove(segment)

    @property
    def superseded(self) -> int:
        return sum(s.superseded for s in (self._segment, *self._retired) if s is not None)

    def close(self) -> None:
        # Like a socket's linger: give subscribers a moment to read what is in their pipes (and so map
        # the segments those records name) before the segments' names go.
        deadline = time.monotonic() + LINGER_S
        while time.monotonic() < deadline and any(_unread(p.fd) for p in self._peers.values()):
            time.sleep(0.005)
        for fd in [*(p.fd for p in self._peers.values()), *self._refusing.values()]:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._peers.clear()
        self._refusing.clear()
        with contextlib.suppress(OSError):
            os.close(self._fd)
        shm.remove(self.path)
        # Subscribers keep their mappings of our segments for as long as they hold frames.
        for segment in (self._segment, *self._retired):
            if segment is not None:
                segment.close()
        self._segment, self._retired = None, []


def _enlarge(fd: int) -> None:
    """Let a subscription's pipe hold what a TCP subscriber's queue would (a node busy in a long
    callback, say a grasp being executed, must not lose small messages that TCP would have queued):
    1 MiB, or the most this system allows unprivileged; pages are used only when filled."""
    import fcntl

    try:
        with open("/proc/sys/fs/pipe-max-size") as f:
            most = int(f.read())
    except (OSError, ValueError):
        most = PIPE_SIZE
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, min(PIPE_SIZE, most))


def _unread(fd: int) -> int:
    """Bytes written to a pipe and not read yet (asked through either end)."""
    import fcntl  # Unix only, as this channel is
    import termios

    try:
        return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0])
    except OSError:
        return 0


class SlotMessage:
    """A message waiting in a publisher's shared-memory slot, not read yet. Until `take()` the
    publisher may give its slot to a newer message (when every slot is in use), as a keep-last queue
    drops its oldest: `take()` then returns None and the message counts as dropped from the queue."""

    __slots__ = ("n", "nbytes", "row", "slot", "src", "tick", "topic", "view")

    def __init__(
        self,
        topic: Frame,
        view: shm.SegmentView | None,  # None: the segment was gone before it could be mapped
        row: int,
        slot: int,
        tick: int,
        src: str,
        n: int,
        nbytes: int,
    ) -> None:
        self.topic, self.view, self.row, self.slot, self.tick = topic, view, row, slot, tick
        self.src, self.n, self.nbytes = src, n, nbytes

    def take(self) -> LeasedFrames | None:
        """The message's frames, read in place (the slot stays ours while any of them lives)."""
        if self.view is None:
            return None
        array = self.view.claim(self.row, self.slot, self.tick)
        if array is None:
            return None
        raw = memoryview(array)  # type: ignore[arg-type]  # numpy arrays export the buffer protocol
        (count,) = _COUNT.unpack_from(raw)
        if not 0 <= count <= (len(array) - 8) // 16:
            raise ValueError(f"slot table claims {count} frames")
        table = struct.unpack_from(f"<{2 * count}Q", raw, 8)
        frames = LeasedFrames([self.topic])
        for i in range(0, 2 * count, 2):
            offset, size = table[i], table[i + 1]
            if offset + size > len(array):
                raise ValueError("a frame runs past the end of its slot")
            frames.append(Frame(array[offset : offset + size]))
        if self.view.over_share():  # it keeps many frames: this one as a copy, its slot back at once
            frames.detach()
        return frames

    def let_go(self) -> None:
        """Dropped unread (evicted from a full queue): the publisher may have the slot back."""
        if self.view is not None:
            self.view.let_go(self.row, self.slot, self.tick)


class LocalInlet:
    """A subscription's side: registers with local publishers and reads what they write."""

    def __init__(self, topic: bytes) -> None:
        shm.sweep_once()
        self.path = shm.new_path("sub")
        os.mkfifo(self.path, 0o600)
        self.fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)
        _enlarge(self.fd)
        self._topic = Frame(topic)
        self._host = shm.host_id()
        self._publishers: dict[str, int] = {}  # publisher pipe -> our write end, to say goodbye
        self._views: dict[str, shm.SegmentView] = {}
        self._carry = b""
        self._housekeeping_at = 0.0
        self.malformed = 0
        self.full: list[str] = []  # publishers (their pipes) that had no row for us: TCP carries them

    @property
    def publisher_count(self) -> int:
        """Publishers this inlet has joined through the local channel."""
        return len(self._publishers)

    def register(self, address: str) -> bool:
        """Join a publisher that advertised `address` ("<host id> <pipe>"); False when it is not on
        this host (or not reachable here), and TCP must carry its messages."""
        host, _, path = address.partition(" ")
        if host != self._host or _path_from(memoryview(path.encode())) is None:
            return False
        if path in self._publishers:
            return True
        try:
            fd = shm.open_own(path, os.O_WRONLY | os.O_NONBLOCK, "pipe")
        except OSError:
            # No such pipe here (another /dev/shm), its publisher has gone, or what is there is not a
            # pipe of this user's: a publisher may name any path, and a local user's link to one of our
            # files would have had the registration record written into it.
            return False
        try:
            os.write(fd, _record(REGISTER, self.path.encode()))
        except OSError:
            os.close(fd)
            return False
        self._publishers[path] = fd
        return True

    def drain(self) -> list[Any]:
        """What was written since the last call: a frame list [topic, header, arrays...] per message
        that came whole, a `SlotMessage` (not read yet) per message in shared memory."""
        try:
            chunk = os.read(self.fd, _READ_CHUNK)
        except (BlockingIOError, OSError):
            return []
        records, self._carry = _records(self._carry + chunk)
        messages: list[Any] = []
        for kind, body in records:
            try:
                if kind == INLINE:
                    messages.append(self._inline(body))
                elif kind == SLOT:
                    messages.append(self._in_slot(body))
                elif kind == FULL:
                    self._refused_by(body)
            except Exception:  # a record that does not describe a message: counted, never fatal
                self.malformed += 1
        if time.monotonic() > self._housekeeping_at:
            self._housekeeping()
        return messages

    def _refused_by(self, body: memoryview) -> None:
        path = _path_from(body)
        fd = self._publishers.pop(path, None) if path is not None else None
        if path is None or fd is None:
            raise ValueError("a FULL record from no publisher this pipe registered with")
        with contextlib.suppress(OSError):
            os.close(fd)
        self.full.append(path)

    def _inline(self, body: memoryview) -> list[Any]:
        (count,) = _INLINE_COUNT.unpack_from(body)
        sizes = struct.unpack_from(f"<{count}I", body, _INLINE_COUNT.size)
        offset = _INLINE_COUNT.size + 4 * count
        if offset + sum(sizes) != len(body):
            raise ValueError("frame sizes do not add up to the record")
        frames: list[Any] = [self._topic]
        for size in sizes:
            frames.append(Frame(body[offset : offset + size]))
            offset += size
        return frames

    def _in_slot(self, body: memoryview) -> SlotMessage:
        row, slot, tick, n, nbytes, src_length = _SLOT.unpack_from(body)
        src = bytes(body[_SLOT.size : _SLOT.size + src_length]).decode()
        name = bytes(body[_SLOT.size + src_length :]).decode()
        view = self._views.get(name)
        if view is None:
            if "/" in name or not name.startswith(shm.PREFIX):
                raise ValueError(f"not a segment name: {name!r}")
            try:
                view = self._views[name] = shm.SegmentView(f"{shm.SHM_DIR}/{name}")
            except FileNotFoundError:  # its publisher closed before this pipe was read: lost, counted
                return SlotMessage(self._topic, None, row, slot, tick, src, n, nbytes)
        view.check(row, slot)
        return SlotMessage(self._topic, view, row, slot, tick, src, n, nbytes)

    def _housekeeping(self) -> None:
        """Unmap segments that their publisher has retired or left behind, once nothing here uses them."""
        self._housekeeping_at = time.monotonic() + _HOUSEKEEPING_S
        for name in list(self._views):
            path = f"{shm.SHM_DIR}/{name}"
            if not os.path.exists(path) or not shm.owner_alive(path):
                del self._views[name]  # unmapped once no queued message or array uses it
        for path, fd in list(self._publishers.items()):
            if not shm.owner_alive(path):  # a publisher killed outright: a respawn registers anew
                with contextlib.suppress(OSError):
                    os.close(fd)
                del self._publishers[path]

    def close(self) -> None:
        goodbye = _record(BYE, self.path.encode())
        for fd in self._publishers.values():
            with contextlib.suppress(OSError):
                os.write(fd, goodbye)
            with contextlib.suppress(OSError):
                os.close(fd)
        self._publishers.clear()
        with contextlib.suppress(OSError):
            os.close(self.fd)
        shm.remove(self.path)
        self._views.clear()  # each unmapped once no queued message or array uses it
