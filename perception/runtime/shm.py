"""Shared-memory segments for large messages between processes on one host (Linux).

A publisher owns segments of fixed-size slots in /dev/shm; each large message is written into one slot
once, and every local subscriber reads it in place (read-only numpy views, no copy). The rules that keep
a held frame intact live in the segment's control block, in 64-bit cells each written by one side only:

- `tick[slot]`: the publisher's counter of the message in the slot (WRITING while it is being written).
- `drained[row]`: a subscriber (its row) has taken every message up to this tick out of its channel.
- `released[row][slot]`: the subscriber is done with the message of this tick in this slot (evicted
  from its queue, or every array of it garbage collected).

The publisher writes a slot only when each subscriber it sent the slot's message to has released it,
or has not yet taken it out of its channel (a backlog: the newer message supersedes it, as a keep-last
queue would). The second case races with the subscriber taking it, so both sides store first, fence,
then load (a Dekker handshake): the publisher marks the slot WRITING and re-reads `drained`; the
subscriber stores `drained` and re-reads `tick`. At least one sees the other: either the publisher backs
off, or the subscriber finds the tick changed and counts the message as superseded. Nothing is read torn.

Files are named `percept-<pid>-<start time>-<pid namespace>-<token>.<kind>`, so anyone can tell a dead
owner's leftovers (the pid is gone, or reused by a process started at another time) and remove them:
`sweep()`, called when a process first uses shared memory and by `percept doctor`. A pid means something
only in its own namespace, so a file of another namespace (a container sharing /dev/shm) is left to it.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import math
import mmap
import os
import secrets
import stat
import struct
import sys
import threading
import weakref
from typing import Any

import numpy as np

from perception.errors import PerceptError
from perception.runtime.settings import number_setting

SHM_DIR = "/dev/shm"
PREFIX = "percept-"
MAGIC = 0x31_74_70_65_63_72_65_70  # b"percept1" little-endian
WRITING = 2**64 - 1
ROWS = 16  # local subscribers per publisher (more connect over TCP)
MAX_SLOTS = 1024  # small messages: as many as the budget holds, up to this
MIN_SLOTS = 2
ALIGN = 64  # every frame in a slot starts on a cache line (numpy views of any dtype stay aligned)
LOAN_OFFSET = 16384  # where a loaned array starts in its slot: the header and small frames go before it
DEFAULT_BUDGET_MB = 64.0
_HEADER_WORDS = 8
SHARE = 4  # the header word holding how many slots each subscriber may hold (0: any number)
_PAGE = mmap.PAGESIZE
_barrier_lock = threading.Lock()


def fence() -> None:
    """A full memory barrier between a store and a later load to shared memory: taking a lock is a
    locked read-modify-write, which x86-64 orders against every earlier store and later load."""
    with _barrier_lock:
        pass


# -- settings ---------------------------------------------------------------------------------------


_ON, _OFF = ("1", "on", "true", "yes"), ("0", "off", "false", "no")


def _setting() -> str:
    """PERCEPT_SHM as "on", "off" or "" (unset); another word is refused rather than read as on."""
    text = os.environ.get("PERCEPT_SHM", "").strip().lower()
    if text and text not in _ON + _OFF:
        raise PerceptError(
            f"PERCEPT_SHM: expected on or off ({', '.join(_ON)}; {', '.join(_OFF)}), found {text!r}"
        )
    return "" if not text else "on" if text in _ON else "off"


def asked_for() -> bool:
    """PERCEPT_SHM says on (1, on, true, yes) in so many words (a keystore turns the default off)."""
    return _setting() == "on"


def enabled() -> bool:
    """Shared memory unless PERCEPT_SHM turns it off (0, off, false, no), on Linux with /dev/shm."""
    return _setting() != "off" and sys.platform == "linux" and os.path.isdir(SHM_DIR)


def host_id() -> str:
    """Who counts as this host: the kernel's boot id and the process's pid namespace, as
    "<boot id>/<namespace inode>" (PERCEPT_HOST_ID overrides it, e.g. to test the TCP fallback between
    two processes of one machine). Containers share the boot id, and with a shared /dev/shm its files,
    but a pid names a process only in its own namespace: the files' owners could not be told alive."""
    override = os.environ.get("PERCEPT_HOST_ID")
    if override:
        return override
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        return "unknown"
    namespace = pid_namespace()
    return f"{boot}/{namespace}" if namespace else boot


def pid_namespace() -> str:
    """The inode number of this process's pid namespace ("" where /proc does not show it)."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


def budget_bytes() -> int:
    """Shared memory a publisher may use per topic (PERCEPT_SHM_MB, default 64 MiB)."""
    text = os.environ.get("PERCEPT_SHM_MB", str(DEFAULT_BUDGET_MB))
    megabytes = number_setting(
        "PERCEPT_SHM_MB", text, lambda v: 1 <= v <= 1 << 20, "a number of MiB from 1 to 1048576", PerceptError
    )
    return int(megabytes * 2**20)


# -- names and leftovers ------------------------------------------------------------------------------


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()  # the command name may hold spaces and ")"
    return fields[19].decode() if len(fields) > 19 else None


_own_tag: str | None = None


def process_tag() -> str:
    """The tag "<pid>-<start time>-<pid namespace>" that names this process's files (see owner_alive)."""
    global _own_tag
    pid = os.getpid()
    if _own_tag is None or not _own_tag.startswith(f"{pid}-"):  # a forked child gets its own
        _own_tag = f"{pid}-{_start_time(pid) or 0}-{pid_namespace() or 0}"
    return _own_tag


def new_path(kind: str) -> str:
    """A name for a file of this process's; the file, if it is still there when the process exits (a
    node whose constructor failed after making its publishers: nothing closed them), is removed then."""
    path = f"{SHM_DIR}/{PREFIX}{process_tag()}-{secrets.token_hex(6)}.{kind}"
    _made[path] = os.getpid()
    return path


def remove(path: str) -> None:
    """Remove a file this process made (gone already is fine) and stop keeping it for the exit."""
    _made.pop(path, None)
    with contextlib.suppress(OSError):
        os.unlink(path)


_made: dict[str, int] = {}  # the files named and not yet removed: path -> the pid that named it


@atexit.register
def _remove_what_is_left() -> None:
    for path, pid in list(_made.items()):
        if pid == os.getpid():  # a forked child that exits leaves its parent's files alone
            remove(path)


def owner_alive(path: str) -> bool:
    """Whether the process that made this percept file still runs (same pid, same start time). A file
    of another pid namespace is taken as alive: its pid names no process here. A name without the
    namespace (`percept-<pid>-<start>-<token>`, as a client may write it) is judged in this one."""
    name = os.path.basename(path)
    parts = name[len(PREFIX) :].split("-")
    if len(parts) < 3 or not parts[0].isdigit():
        return True  # not ours to judge
    if len(parts) >= 4 and parts[2] != (pid_namespace() or "0"):
        return True  # another namespace's
    return _start_time(int(parts[0])) == parts[1]


def sweep() -> list[str]:
    """Remove the segments and channels of processes that died without removing them (kill -9)."""
    removed: list[str] = []
    try:
        names = [n for n in os.listdir(SHM_DIR) if n.startswith(PREFIX)]
    except OSError:
        return removed
    for name in names:
        path = f"{SHM_DIR}/{name}"
        if not owner_alive(path):
            with contextlib.suppress(OSError):
                os.unlink(path)
                removed.append(name)
    return removed


_swept = False


def sweep_once() -> None:
    """Sweep leftovers the first time this process uses shared memory."""
    global _swept
    if not _swept:
        _swept = True
        sweep()


# -- segments ---------------------------------------------------------------------------------------


class NoRoom(PerceptError):
    """/dev/shm has no room left for a segment's memory."""


def _reserve(fd: int, offset: int, length: int, path: str) -> None:
    """Give the file's pages from `offset` real memory now. A sparse file's pages are found only when
    first written, and on a full /dev/shm that write kills the process with SIGBUS (a publisher was
    restarted and killed again, over and over, while another user's file filled /dev/shm); reserved,
    a full /dev/shm is an error here, which the caller can answer."""
    try:
        os.posix_fallocate(fd, offset, length)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.ENOMEM):
            raise NoRoom(
                f"{SHM_DIR} has no room for {length} more bytes of {os.path.basename(path)}"
            ) from exc
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # a file system that reserves nothing
            raise


def open_own(path: str, flags: int, kind: str) -> int:
    """Open one of this user's percept files, refusing anything else at that path: a symbolic link (a
    local user who advertises a link to one of our files would have us write into it), another user's
    file, or a file of another kind (a segment named as a pipe would be written over)."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)
    found = os.fstat(fd)
    is_kind = stat.S_ISFIFO(found.st_mode) if kind == "pipe" else stat.S_ISREG(found.st_mode)
    if found.st_uid != os.geteuid() or not is_kind:
        os.close(fd)
        raise PermissionError(
            errno.EPERM,
            f"not a {kind} of this user's (owner uid {found.st_uid}, mode {stat.filemode(found.st_mode)})",
            path,
        )
    return fd


def _round_up(n: int, to: int) -> int:
    return (n + to - 1) // to * to


class _Layout:
    """Where things are in a segment of `slots` slots of `slot_bytes` each."""

    def __init__(self, slots: int, slot_bytes: int) -> None:
        self.slots = slots
        self.slot_bytes = slot_bytes
        words = _HEADER_WORDS + slots + ROWS + ROWS * slots
        self.control_bytes = _round_up(words * 8, _PAGE)
        self.total = self.control_bytes + slots * slot_bytes

    def arrays(self, control: Any) -> tuple[memoryview, memoryview, memoryview, memoryview]:
        """header, tick[slot], drained[row], released[row * slots + slot]: 64-bit cells, as memoryviews
        (a Python int in and out, each an aligned 8-byte load or store, cheaper than numpy's)."""
        words = memoryview(control)[: self.control_bytes].cast("Q")
        header = words[:_HEADER_WORDS]
        tick = words[_HEADER_WORDS : _HEADER_WORDS + self.slots]
        drained = words[_HEADER_WORDS + self.slots : _HEADER_WORDS + self.slots + ROWS]
        start = _HEADER_WORDS + self.slots + ROWS
        released = words[start : start + ROWS * self.slots]
        return header, tick, drained, released


class Segment:
    """A publisher's segment: picks a slot for each large message and writes the message into it."""

    def __init__(self, slot_bytes: int, budget: int) -> None:
        slot_bytes = _round_up(slot_bytes, _PAGE)
        slots = max(MIN_SLOTS, min(MAX_SLOTS, budget // slot_bytes))
        self.layout = _Layout(slots, slot_bytes)
        self.path = new_path("seg")
        self.name = os.path.basename(self.path)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            # Sparse: a slot takes memory only once it is first used (`acquire` reserves it then), so
            # a steady stream that reuses two or three slots takes two or three slots' memory.
            os.ftruncate(fd, self.layout.total)
            _reserve(fd, 0, self.layout.control_bytes, self.path)
            self._mmap = mmap.mmap(fd, self.layout.total)
        except (OSError, NoRoom):
            os.close(fd)
            remove(self.path)
            raise
        self._fd = fd  # kept for reserving slots
        self._reserved: set[int] = set()  # slots whose memory is reserved
        header, self.tick, self.drained, self.released = self.layout.arrays(
            memoryview(self._mmap)[: self.layout.control_bytes]
        )
        header[0], header[1], header[2], header[3] = MAGIC, slots, slot_bytes, ROWS
        self._bytes = memoryview(self._mmap)[self.layout.control_bytes :]
        # Per slot: the tick each row was sent it with, for rows that have not said they are done.
        self.pending: list[dict[int, int]] = [{} for _ in range(slots)]
        self.loaned: dict[int, tuple[int, int]] = {}  # loaned array's address -> (slot, loan number)
        self._loaned_arrays: dict[int, tuple[weakref.ref[np.ndarray], int]] = {}  # id -> (array, address)
        self._loans = 0
        self._address = np.frombuffer(self._bytes, np.uint8).__array_interface__["data"][0]
        self.superseded = 0  # slots taken back from a subscriber that had not drained them yet
        self._header = header
        self.share_among(1)

    def acquire(self, live_rows: set[int]) -> int | None:
        """A slot that nobody holds, lowest first (the slots just released are still in the CPU's
        caches, so a steady stream reuses two or three); else the oldest one that its subscribers have
        not read yet (superseded); None when subscribers hold every slot."""
        unread = []
        loaned = {slot for slot, _ in self.loaned.values()}
        for slot in range(self.layout.slots):
            if slot in loaned:
                continue
            holding = self._holding(slot, live_rows)
            if not holding:
                self.pending[slot].clear()
                self._reserve_slot(slot)
                return slot
            if all(self.drained[r] < t for r, t in holding.items()):
                unread.append((min(holding.values()), slot, holding))
        for _, slot, holding in sorted(unread):
            if self._take_back(slot, holding):
                return slot
        return None

    def _reserve_slot(self, slot: int) -> None:
        """Reserve a slot's memory before its first write (NoRoom on a full /dev/shm)."""
        if slot not in self._reserved:
            size = self.layout.slot_bytes
            _reserve(self._fd, self.layout.control_bytes + slot * size, size, self.path)
            self._reserved.add(slot)

    def _holding(self, slot: int, live_rows: set[int]) -> dict[int, int]:
        released = self.released
        slots = self.layout.slots
        return {
            r: t for r, t in self.pending[slot].items() if r in live_rows and released[r * slots + slot] < t
        }

    def _take_back(self, slot: int, holding: dict[int, int]) -> bool:
        """Take a slot back from subscribers that have not read it, unless one reads it right now."""
        drained = self.drained
        previous = self.tick[slot]
        self.tick[slot] = WRITING
        fence()
        if any(drained[r] >= t for r, t in holding.items()):
            self.tick[slot] = previous  # lost the race: that subscriber has it now
            return False
        self.superseded += 1
        self.pending[slot].clear()
        return True

    def write(self, slot: int, tick: int, frames: list[memoryview], loaned: int = -1) -> bool:
        """Copy the frames into the slot: a table (count, then offset and length per frame), then the
        frames, each on a cache line; `tick` is set last, once the bytes are in place. Frame `loaned`
        (an index) is the array loaned in this slot, in place already: the others go before it, and
        False means they do not fit there (the caller then copies the whole message elsewhere)."""
        table: list[int] = [len(frames)]
        offset = table_bytes(len(frames))
        for i, frame in enumerate(frames):
            if i == loaned:
                table += (LOAN_OFFSET, frame.nbytes)
            else:
                table += (offset, frame.nbytes)
                offset += _round_up(frame.nbytes, ALIGN)
        if loaned >= 0 and offset > LOAN_OFFSET:
            return False
        self.tick[slot] = WRITING
        base = slot * self.layout.slot_bytes
        data = self._bytes
        for i, frame in enumerate(frames):
            if i != loaned:
                start = base + table[1 + 2 * i]
                data[start : start + frame.nbytes] = frame  # one memcpy
        struct.pack_into(f"<{len(table)}Q", data, base, *table)
        self.tick[slot] = tick
        return True

    def loan(self, shape: tuple[int, ...], dtype: np.dtype[Any], live_rows: set[int]) -> np.ndarray | None:
        """A writable array in a free slot, to be filled and published without a copy; None when no
        slot is free or the array does not fit. Given back if dropped unpublished."""
        size = math.prod(shape) * dtype.itemsize
        if LOAN_OFFSET + size > self.layout.slot_bytes:
            return None
        slot = self.acquire(live_rows)
        if slot is None:
            return None
        start = slot * self.layout.slot_bytes + LOAN_OFFSET
        array = np.frombuffer(self._bytes, dtype, count=math.prod(shape), offset=start).reshape(shape)
        address = self._address + start
        self._loans += 1
        self.loaned[address] = (slot, self._loans)
        loan = self._loans

        def given_back(_: object) -> None:
            """The array was dropped: its slot is free again, unless it was published (or loaned anew)."""
            self._loaned_arrays.pop(id_, None)
            if self.loaned.get(address, (0, 0))[1] == loan:
                del self.loaned[address]

        id_ = id(array)
        self._loaned_arrays[id_] = (weakref.ref(array, given_back), address)
        return array

    def loan_of(self, frame: Any) -> int | None:
        """The slot of `frame` if it is an array this segment loaned and nobody published yet (taken
        out of the loans), else None."""
        entry = self._loaned_arrays.get(id(frame))
        if entry is None or entry[0]() is not frame:
            return None
        return self.loan_at(entry[1])

    def loan_at(self, address: int) -> int | None:
        """The slot of the unpublished loan that starts at `address` (taken out of the loans), or None."""
        loan = self.loaned.pop(address, None)
        return None if loan is None else loan[0]

    def share_among(self, subscribers: int) -> None:
        """Tell subscribers how many slots each may hold (one at least): together they leave one free
        where there are more slots than subscribers (a budget of a few huge frames may have fewer), so
        that neither a subscriber that keeps every frame nor one that joins later is stopped by the
        others."""
        self._header[SHARE] = max(1, (self.layout.slots - 1) // max(1, subscribers))

    def drop_row(self, row: int) -> None:
        """A subscriber has gone: nothing it was sent is held any longer."""
        for pending in self.pending:
            pending.pop(row, None)

    def idle(self, live_rows: set[int]) -> bool:
        """True when no live subscriber holds any slot (a retired segment may then be closed)."""
        return not any(self._holding(slot, live_rows) for slot in range(self.layout.slots))

    def close(self) -> None:
        remove(self.path)
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1  # a second close must not close a number since given to another file
        del self.tick, self.drained, self.released, self._bytes, self._header
        with contextlib.suppress(BufferError):
            self._mmap.close()


def table_bytes(frame_count: int) -> int:
    return _round_up(8 + 16 * frame_count, ALIGN)


def slot_size(sizes: list[int]) -> int:
    return table_bytes(len(sizes)) + sum(_round_up(s, ALIGN) for s in sizes)


class SegmentView:
    """A subscriber's mapping of a publisher's segment: data read-only, its own cells writable."""

    def __init__(self, path: str) -> None:
        fd = open_own(path, os.O_RDWR, "segment")
        try:
            head = np.frombuffer(os.pread(fd, 32, 0), np.uint64)
            if int(head[0]) != MAGIC or int(head[3]) != ROWS:
                raise PerceptError(f"{path}: not a percept segment of this version")
            self.layout = _Layout(int(head[1]), int(head[2]))
            if os.fstat(fd).st_size < self.layout.total:
                raise PerceptError(f"{path}: shorter than its header says")
            self._control = mmap.mmap(fd, self.layout.control_bytes)
            self._data = mmap.mmap(
                fd,
                self.layout.total - self.layout.control_bytes,
                prot=mmap.PROT_READ,
                offset=self.layout.control_bytes,
            )
        finally:
            os.close(fd)
        # Unmapped when this object goes: every array read from it and every queued message keeps it.
        self._header, self.tick, self.drained, self.released = self.layout.arrays(self._control)
        self._held: set[tuple[int, int]] = set()  # (slot, tick) of the messages this process holds

    def check(self, row: int, slot: int) -> None:
        if not (0 <= row < ROWS and 0 <= slot < self.layout.slots):
            raise PerceptError(f"row {row} / slot {slot} outside the segment ({self.layout.slots} slots)")

    def let_go(self, row: int, slot: int, tick: int) -> None:
        """This subscriber will never read the message of `tick` in `slot`."""
        self.released[row * self.layout.slots + slot] = tick

    def claim(self, row: int, slot: int, tick: int) -> np.ndarray | None:
        """The slot's bytes as a read-only array that holds the slot until it is garbage collected;
        None when the publisher took the slot back before this subscriber got to it."""
        self.drained[row] = tick
        fence()
        if self.tick[slot] != tick:
            self.let_go(row, slot, tick)
            return None
        size = self.layout.slot_bytes
        array = np.frombuffer(self._data, np.uint8, count=size, offset=slot * size)
        # Released when the last view of it goes (on whichever thread drops it).
        self._held.add((slot, tick))
        weakref.finalize(array, self._release, row, slot, tick)
        return array

    def over_share(self) -> bool:
        """Whether this subscriber holds more slots than its publisher lets each one hold."""
        share = self._header[SHARE]
        return 0 < share < len(self._held)

    def _release(self, row: int, slot: int, tick: int) -> None:
        self._held.discard((slot, tick))
        self.let_go(row, slot, tick)
