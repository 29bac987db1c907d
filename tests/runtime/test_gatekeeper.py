"""The gatekeeper's parts that need no other process: the open-file limit, the refusal count and its
line a second, the words a refused caller is told, and a keystore another user owns.
(tests/runtime/test_security.py has the real handshakes, between processes.)"""

from __future__ import annotations

import logging
import resource
import time
from pathlib import Path

import pytest
import zmq

from perception.runtime import gatekeeper, security
from perception.runtime.gatekeeper import (
    HANDSHAKE_TIMEOUT_S,
    Gatekeeper,
    raise_open_file_limit,
    refusals_line,
)
from perception.runtime.registry import refusal
from perception.runtime.security import Keys, SecurityError


@pytest.mark.parametrize(
    ("soft", "hard", "expected"),
    [
        (1024, 20000, 20000),  # a user's usual limits here: up to the hard limit
        (1024, resource.RLIM_INFINITY, gatekeeper.MAX_OPEN_FILES),  # capped
        (1024, 1024, 1024),  # nothing to raise to
        (100000, 200000, 100000),  # never lowered
    ],
)
def test_the_open_file_limit_is_raised_towards_the_hard_limit(monkeypatch, soft, hard, expected):
    set_to: list[tuple[int, int]] = []
    monkeypatch.setattr(resource, "getrlimit", lambda _: (soft, hard))
    monkeypatch.setattr(resource, "setrlimit", lambda _, limits: set_to.append(limits))
    assert raise_open_file_limit() == expected
    assert set_to == ([(expected, hard)] if expected != soft else [])


def test_a_limit_that_cannot_be_raised_is_kept(monkeypatch):
    def refuse(*_: object) -> None:
        raise ValueError("not allowed")

    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 4096))
    monkeypatch.setattr(resource, "setrlimit", refuse)
    assert raise_open_file_limit() == 1024


def test_a_line_of_refusals_names_each_socket_why_and_from_where(tmp_path):
    keys = _keys(tmp_path)
    groups = {
        ("the registry", "key"): 40,
        ("publisher /camera/image", "mechanism"): 7,
        ("the registry", "timeout"): 2,
        ("service /camera/set_parameters", "cryptographic"): 1,
        ("the registry's events", "protocol error 0x11000001"): 1,
        ("publisher /tf", "timeout"): 1,
    }
    line = refusals_line(groups, {("the registry", "key"): {"127.0.0.1"}}, time.time(), keys)
    assert "\n" not in line
    assert line.startswith("refused 52 connections since ")
    assert f"40 to the registry with a CURVE key not in {keys.keystore}/public/ (from 127.0.0.1)" in line
    assert "7 to publisher /camera/image without CURVE" in line
    assert f"2 to the registry that did not complete a handshake within {HANDSHAKE_TIMEOUT_S:g} s" in line
    assert line.endswith("2 more to other sockets")  # the fifth and sixth kinds, counted together


def test_a_flood_of_refusals_is_counted_whole_and_logged_once_a_second(caplog):
    context = zmq.Context()
    keeper = Gatekeeper(context, None)
    try:
        with caplog.at_level(logging.WARNING, logger="percept.gatekeeper"):
            started = time.monotonic()
            while time.monotonic() - started < 2.5:  # 2.5 s of refusals as fast as they come
                keeper.count("the registry", "timeout")
            keeper.stop()  # tells the last second's
        lines = [r.getMessage() for r in caplog.records if r.name == "percept.gatekeeper"]
        assert keeper.refused > 10_000
        assert 2 <= len(lines) <= 4, lines  # at most one a second, and the rest when it stopped
        told = sum(int(line.split()[1]) for line in lines)
        assert told == keeper.refused, lines  # every refusal in some line: none lost, none twice
    finally:
        keeper.stop()
        context.term()


def test_a_refused_caller_is_told_why_as_far_as_it_can_know(tmp_path):
    keys = _keys(tmp_path, "latecomer")
    address = "tcp://127.0.0.1:1"
    refused_key = refusal(address, zmq.EVENT_HANDSHAKE_FAILED_AUTH, 400, keys)
    assert refused_key == (
        f"the registry at {address} refused this caller's key (enclave latecomer of {keys.keystore}): a key "
        "added after the graph started is taken only after a restart (of the registry, and of this process: "
        "a refused connection is not retried), or the registry uses another keystore"
    )
    (keys.keystore / "public" / "latecomer.key").unlink()  # not even in this host's allow-list
    not_listed = refusal(
        address, zmq.EVENT_HANDSHAKE_FAILED_AUTH, 400, Keys.load(keys.keystore, "latecomer"), "this node"
    )
    assert "refused this node's key: enclave latecomer has no public key in" in not_listed
    mismatch = zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
    assert "takes CURVE clients only" in refusal(address, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, mismatch, None)
    assert "does not use CURVE" in refusal(address, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, mismatch, keys)
    # What a client cannot tell apart (a server that closed mid-handshake) it does not guess at.
    assert refusal(address, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, 32, keys) == ""


def test_another_users_keystore_is_one_line_naming_it(tmp_path, monkeypatch):
    """The audit's user pointed PERCEPT_KEYSTORE at another user's keystore and got a PermissionError
    traceback from Path.is_file on its private/ (0700). Root reads everything, so the refusal is made."""
    keys = _keys(tmp_path)
    private = keys.keystore / "private"
    is_file = Path.is_file

    def denied(path: Path) -> bool:
        if path.parent == private:
            raise PermissionError(13, "Permission denied", str(path))
        return is_file(path)

    monkeypatch.setattr(Path, "is_file", denied)
    with pytest.raises(SecurityError) as error:
        Keys.load(keys.keystore, "camera")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(
        f"keystore {keys.keystore}: cannot read {private}/camera.key_secret: permission denied"
    )
    assert "run as that user, or make one of your own with `percept keys generate DIR`" in message


def _keys(tmp_path: Path, enclave: str = "camera") -> Keys:
    security.generate(tmp_path / "keys", [enclave])
    return Keys.load(tmp_path / "keys", enclave)


def test_a_context_holds_as_many_publishers_as_before_its_sockets_were_guarded():
    """Each guarded socket takes two more of the context's sockets (libzmq's monitor and its reader):
    at libzmq's default of 1,023 a context failed at its 341st publisher ("Too many open files")."""
    from perception.runtime.context import Context

    context = Context(registry="tcp://127.0.0.1:9", shared_memory=False, keys=False)
    outlets = []
    try:
        for i in range(400):
            outlets.append(context.outlet(f"/t{i}".encode(), 10))
        assert len(outlets) == 400 and context.zmq.get(zmq.MAX_SOCKETS) > 1023
    finally:
        for outlet in outlets:
            outlet.close()
        context.close()
        context.close()  # a second close does nothing
