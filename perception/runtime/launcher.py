"""Runs a launch description: one process per node, a status table, respawns, and a clean stop.

Each node runs as `python -m perception.cli run TARGET ...` in its own process group, with the parent-
death signal set, so no child outlives the launcher: on Ctrl-C or SIGTERM every group gets SIGTERM (a
node stops on it as on Ctrl-C; a process still starting Python ends quietly, where SIGINT would print a
KeyboardInterrupt traceback from deep in its imports), then SIGKILL if it still lives after
`stop_timeout_s`. The launcher starts a registry in its own process when none answers at
PERCEPT_REGISTRY, and restarts it if it dies; a registry it found running (another launch's) it
replaces with one of its own once that one stops answering.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from perception.errors import RegistryUnavailable
from perception.msgs import NodeStats
from perception.runtime import registry
from perception.runtime.context import Context
from perception.runtime.launch_file import LaunchDescription, NodeSpec
from perception.runtime.node import STATS_TOPIC, Node
from perception.runtime.security import (
    ENCLAVE_ENV,
    KEYSTORE_ENV,
    REGISTRY,
    TOOLS,
    Keys,
    SecurityError,
    enclave_for,
)
from perception.runtime.stats import SILENT_AFTER_S, problems, rate_text
from perception.runtime.stopping import StopFlag, stop_signals_call

MAX_RESPAWN_DELAY_S = 30.0
REGISTRY_CHECK_S = 1.0  # how often a launcher asks whether a registry it did not start still answers
REGISTRY_RESPAWN_DELAY_S = 0.5  # after a second quick death of the registry; the first restarts at once
STABLE_AFTER_S = 10.0  # a node that ran this long before dying restarts with the shortest delay again
# A node that dies the same way (exit code and last line) this many times in a row, each within
# STABLE_AFTER_S of starting, is in a crash loop (Kubernetes' CrashLoopBackOff): respawning it cannot
# help (a bad parameter, a missing file), so it is left stopped with its last error shown.
CRASH_LOOP_COUNT = 5
_PR_SET_PDEATHSIG = 1


@dataclass
class Child:
    spec: NodeSpec
    process: subprocess.Popen[bytes] | None = None
    state: str = "starting"
    restarts: int = 0
    started_at: float = 0.0
    restart_at: float | None = None
    exit_code: int | None = None
    rates: dict[str, str] = field(default_factory=dict)  # ">topic" -> its rate (and queue drops), printed
    problems: str = ""  # what went wrong in the node so far, from its stats ("" when nothing)
    stats_at: float | None = None  # when this run's last stats came (monotonic): a stuck node sends none
    last_line: str = ""  # the last line it printed (a node's last words are usually its error)
    relay: threading.Thread | None = None
    crashes: list[tuple[int | None, str]] = field(default_factory=list)  # the quick deaths in a row
    quick_exits: int = 0  # exits in a row, each within STABLE_AFTER_S of its start
    came_up: bool = False  # it reported its stats at least once, in any of its runs


@functools.cache  # asked once a second of the one address a launch uses
def _on_this_host(address: str) -> bool:
    """Whether a registry address (`tcp://HOST:PORT`) is one this machine can listen on."""
    host = address.rsplit(":", 1)[0].removeprefix("tcp://").strip("[]")
    if host in ("*", "0.0.0.0", "::", "localhost"):
        return True
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((host, 0))  # binds only to an address of this machine's
    except OSError:
        return False
    return True


def respawn_backoff(child: Child, ran_for: float) -> float:
    """The delay before restarting a node that just exited after `ran_for` seconds: its respawn delay,
    doubled for each exit in a row that came within STABLE_AFTER_S of its start (up to
    MAX_RESPAWN_DELAY_S). A run longer than that starts the count again, so the restarts of a node that
    crashes now and then, hours apart, never add up to a long outage."""
    child.quick_exits = child.quick_exits + 1 if ran_for <= STABLE_AFTER_S else 0
    level = min(max(child.quick_exits - 1, 0), 10)
    return float(min(child.spec.respawn_delay * 2**level, MAX_RESPAWN_DELAY_S))


def _silence(child: Child) -> str:
    """A running node that has sent no stats for a while is in a callback that has not returned: a grasp
    service moving the arm for seconds, a client waiting on it, or a callback stuck for good. Not a
    fault in itself, so said beside the rates, not after the `!`; how long tells which."""
    if child.state != "running" or child.stats_at is None:
        return ""
    quiet = time.monotonic() - child.stats_at
    return f"  (no stats for {quiet:.0f} s: in a long callback)" if quiet >= SILENT_AFTER_S else ""


def die_with_this_process() -> Callable[[], None]:
    """A `preexec_fn` for a child that must not outlive this process: the child gets SIGTERM when this
    process dies, even by SIGKILL. If it died between the fork and the prctl, no signal will come (the
    child already has a new parent), so the child exits at once instead."""
    parent = os.getpid()

    def arm() -> None:
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except OSError:
            return  # not Linux: the process-group kill on shutdown still applies
        if os.getppid() != parent:
            os._exit(1)

    return arm


def node_command(spec: NodeSpec) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "perception.cli",
        "run",
        spec.target,
        "--name",
        spec.name,
        "--namespace",
        spec.namespace,
    ]
    if spec.parameters:
        command += ["--params-json", json.dumps(spec.parameters)]
    if spec.shared_parameters:
        command += ["--shared-parameters", ",".join(sorted(spec.shared_parameters))]
    for source, target in spec.remappings.items():
        command += ["-r", f"{source}:={target}"]
    return command


class Launcher:
    def __init__(
        self,
        description: LaunchDescription,
        *,
        status_period_s: float = 5.0,
        stop_timeout_s: float = 5.0,
        out: IO[str] = sys.stdout,
    ) -> None:
        self.children = [Child(spec) for spec in description.nodes]
        self.keystore = description.keystore
        self.status_period_s = status_period_s
        self.stop_timeout_s = stop_timeout_s
        self.out = out
        self._stop = StopFlag()
        self._failed_required: Child | None = None
        self._print_lock = threading.Lock()
        self._registry_process: subprocess.Popen[bytes] | None = None
        self._registry_started_at = 0.0
        self._registry_restart_at: float | None = None
        self._registry_quick_exits = 0
        self._registry_restarts = 0
        self._next_registry_check = 0.0
        self._registry_misses = 0  # checks in a row that a registry it did not start failed to answer
        self._relays: list[threading.Thread] = []

    def run(self, duration_s: float | None = None) -> int:
        """Start everything, supervise until Ctrl-C, SIGTERM, `duration_s`, or a required node dies."""
        with stop_signals_call(self._stop.set):
            return self._run(duration_s)

    def _run(self, duration_s: float | None) -> int:
        self._check_keystore()
        self._ensure_registry()
        monitor = Node("_launcher", context=Context())
        monitor.create_subscription(NodeStats, STATS_TOPIC, self._on_stats)
        try:
            for child in self.children:
                self._start(child)
            deadline = None if duration_s is None else time.monotonic() + duration_s
            next_status = time.monotonic() + self.status_period_s
            while not self._stop.is_set():
                monitor.spin_once(0.1)
                self._supervise_registry()
                self._supervise()
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    self._say(f"[launch] {duration_s:g} s elapsed, stopping")
                    break
                if self.status_period_s > 0 and now >= next_status:
                    next_status = now + self.status_period_s
                    self._say(self.status_table())
                if all(c.state in ("exited", "failed", "crash-loop") for c in self.children):
                    self._say("[launch] every node has exited")
                    break
        finally:
            self._stop.set()
            self._shutdown()
            monitor.destroy()
            self._stop_registry()
        if self._failed_required is not None:
            spec = self._failed_required.spec
            self._say(f"[launch] required node {spec.fqn} exited with code {self._failed_required.exit_code}")
            return 1
        self._say(self.status_table())
        looping = [c.spec.fqn for c in self.children if c.state == "crash-loop"]
        if looping:
            self._say(f"[launch] in a crash loop, left stopped: {', '.join(looping)}")
            return 1
        # A node that failed on its own (not respawned, not required) did not stop the others, but the
        # run did not go as written: a script or CI must be able to tell.
        failed = [f"{c.spec.fqn} ({c.exit_code})" for c in self.children if c.state == "failed"]
        if failed:
            self._say(f"[launch] failed (exit code), not restarted: {', '.join(failed)}")
            return 1
        return 0

    # -- processes ---------------------------------------------------------------------------------

    def _check_keystore(self) -> None:
        """With a keystore (the launch file's, or PERCEPT_KEYSTORE), every node must have its key:
        say which is missing now rather than as each node fails to start."""
        if self.keystore is not None:
            os.environ[KEYSTORE_ENV] = str(self.keystore.resolve())  # the registry, the nodes, this process
        keystore = os.environ.get(KEYSTORE_ENV)
        if not keystore:
            return
        Keys.load(keystore, TOOLS)  # this process's monitor, and a clear error for a bad keystore
        for child in self.children:
            if enclave_for(child.spec.fqn) in (REGISTRY, TOOLS):
                raise SecurityError(
                    f"node {child.spec.fqn}: with a keystore, a node may not be named as an enclave of its own (registry, tools)"
                )
            Keys.load(keystore, enclave_for(child.spec.fqn))
        self._say(f"[launch] CURVE on: keystore {keystore}")

    def _ensure_registry(self) -> None:
        address = registry.registry_address()
        if registry.is_running(address):
            self._say(f"[launch] using the registry at {address}")
            return
        self._registry_process = self._spawn_registry(address)
        deadline = time.monotonic() + 10
        while not registry.is_running(address, timeout_s=0.2):
            if self._registry_process.poll() is not None or time.monotonic() > deadline:
                raise RegistryUnavailable(f"could not start a registry at {address}")
        self._say(f"[launch] started a registry at {address} (pid {self._registry_process.pid})")

    def _spawn_registry(self, address: str) -> subprocess.Popen[bytes]:
        self._registry_started_at = time.monotonic()
        return subprocess.Popen(
            [sys.executable, "-m", "perception.cli", "registry", "--address", address],
            start_new_session=True,
            preexec_fn=die_with_this_process(),
        )

    def _supervise_registry(self) -> None:
        """Restart the registry this launcher started if it died: without one, a node that restarts
        or joins is introduced to nobody. Nodes resend their registration every second, so the new one
        knows the whole graph again within about a second of starting."""
        process = self._registry_process
        if process is None:
            self._watch_registry_of_another()
            return
        if process.poll() is None:
            return
        now = time.monotonic()
        if self._registry_restart_at is None:
            ran_for = now - self._registry_started_at
            self._registry_quick_exits = self._registry_quick_exits + 1 if ran_for <= STABLE_AFTER_S else 0
            level = min(self._registry_quick_exits, 8)
            delay = (
                0.0 if level <= 1 else min(REGISTRY_RESPAWN_DELAY_S * 2 ** (level - 1), MAX_RESPAWN_DELAY_S)
            )
            self._registry_restart_at = now + delay
            self._say(
                f"[launch] the registry exited with code {process.returncode}; restarting it in {delay:.1f} s"
            )
            return
        if now < self._registry_restart_at:
            return
        self._registry_restart_at = None
        address = registry.registry_address()
        if registry.is_running(address, timeout_s=0.2):  # somebody else started one meanwhile
            self._registry_process = None
            self._say(f"[launch] using the registry at {address}")
            return
        self._registry_process = self._spawn_registry(address)
        self._registry_restarts += 1
        self._say(f"[launch] restarted the registry at {address} (pid {self._registry_process.pid})")

    def _watch_registry_of_another(self) -> None:
        """A registry this launcher found running (another launcher's, or one started by hand) is
        checked every REGISTRY_CHECK_S; once it has not answered twice in a row, this launcher starts
        one at the same address and looks after it as its own (the other's port is free by then)."""
        now = time.monotonic()
        address = registry.registry_address()
        if now < self._next_registry_check or not _on_this_host(address):  # another host's is its own
            return
        self._next_registry_check = now + REGISTRY_CHECK_S
        if registry.is_running(address, timeout_s=0.3):
            self._registry_misses = 0
            return
        self._registry_misses += 1
        if self._registry_misses < 2:  # one miss may be a busy registry
            return
        self._registry_misses = 0
        self._registry_process = self._spawn_registry(address)
        self._registry_restarts += 1
        self._say(
            f"[launch] the registry at {address} stopped answering; started one (pid {self._registry_process.pid})"
        )

    def _stop_registry(self) -> None:
        process = self._registry_process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _start(self, child: Child) -> None:
        env = {**os.environ, **child.spec.env, "PYTHONUNBUFFERED": "1"}
        if env.get(KEYSTORE_ENV):
            env[ENCLAVE_ENV] = enclave_for(child.spec.fqn)  # each node speaks with its own key
        child.process = subprocess.Popen(
            node_command(child.spec),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: we signal the group, grandchildren too
            preexec_fn=die_with_this_process(),
        )
        child.state = "running"
        child.stats_at = None  # this run has sent none yet (its start-up may take a while)
        child.started_at = time.monotonic()
        child.restart_at = None
        child.exit_code = None
        relay = threading.Thread(target=self._relay, args=(child, child.process), daemon=True)
        child.relay = relay
        child.last_line = ""
        relay.start()
        self._relays = [r for r in self._relays if r.is_alive()] + [relay]

    def _relay(self, child: Child, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        prefix = f"[{child.spec.fqn}] "
        for line in iter(process.stdout.readline, b""):
            text = line.decode(errors="replace").rstrip()
            if text.strip():
                child.last_line = text.strip()
            self._say(prefix + text)

    def _supervise(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.state == "respawning" and child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                self._start(child)
                continue
            if child.state != "running" or child.process is None or child.process.poll() is None:
                continue
            child.exit_code = child.process.returncode
            # Its rates were what it did while it ran: a dead node shown sending 5 msgs/s is a lie. What went
            # wrong in it (after the `!`) stays: that tells why it might have died.
            child.rates = {}
            spec = child.spec
            if spec.required and child.exit_code == 0:
                # A required node that finishes its job (a pick loop, a recording) ends the launch cleanly.
                child.state = "exited"
                self._say(f"[launch] required node {spec.fqn} finished (exit code 0); stopping the others")
                self._stop.set()
            elif spec.required and not (spec.respawn and child.came_up):
                # A node that never came up failed to start (a bad parameter, a missing model):
                # starting it again cannot help, and the run cannot go on without it.
                child.state = "failed"
                self._failed_required = child
                self._stop.set()
            elif spec.respawn and self._crash_loop(child, now):
                child.state = "crash-loop"
                self._say(
                    f"[launch] {spec.fqn} exited with code {child.exit_code} {CRASH_LOOP_COUNT} times in a row, "
                    f"each within {STABLE_AFTER_S:g} s of starting: not restarting it (crash loop); "
                    f"its last words: {child.last_line or '(none)'}"
                )
                if spec.required:
                    self._failed_required = child
                    self._stop.set()
            elif spec.respawn:
                delay = respawn_backoff(child, now - child.started_at)
                child.state = "respawning"
                child.restart_at = now + delay
                self._say(
                    f"[launch] {spec.fqn} exited with code {child.exit_code}; restarting in {delay:.1f} s"
                )
            else:
                child.state = "exited" if child.exit_code == 0 else "failed"
                self._say(f"[launch] {spec.fqn} exited with code {child.exit_code}")

    def _crash_loop(self, child: Child, now: float) -> bool:
        """Note this exit; True when it is the CRASH_LOOP_COUNT-th quick death of the same kind in a row."""
        if child.relay is not None:
            child.relay.join(timeout=1.0)  # its last lines (the error) are still in the pipe
        quick = child.exit_code != 0 and now - child.started_at <= STABLE_AFTER_S
        way = (child.exit_code, child.last_line)
        if not quick or (child.crashes and child.crashes[-1] != way):
            child.crashes = []
        if quick:
            child.crashes.append(way)
        return len(child.crashes) >= CRASH_LOOP_COUNT

    def _shutdown(self) -> None:
        alive = [c for c in self.children if c.process is not None and c.process.poll() is None]
        for sig, wait_s in ((signal.SIGTERM, self.stop_timeout_s), (signal.SIGKILL, 2.0)):
            for child in alive:
                assert child.process is not None
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, sig)
            deadline = time.monotonic() + wait_s
            while alive and time.monotonic() < deadline:
                alive = [c for c in alive if c.process is not None and c.process.poll() is None]
                time.sleep(0.05)
            if not alive:
                break
        for child in self.children:
            if child.process is not None and child.process.poll() is not None and child.state == "running":
                child.state = "stopped"
                child.exit_code = child.process.returncode
            if child.process is not None:  # anything left in the group (grandchildren) goes too
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.process.pid, signal.SIGKILL)
        # A node's last lines (a summary, a traceback) are still in its pipe when it exits: print them.
        for relay in self._relays:
            relay.join(timeout=2.0)

    # -- status ------------------------------------------------------------------------------------

    def _on_stats(self, stats: NodeStats) -> None:
        for child in self.children:
            if child.spec.fqn == stats.node and child.state == "running":  # not a late report of the dead
                child.came_up = True
                child.stats_at = time.monotonic()
                child.rates = {
                    f"{'>' if t.direction == 'pub' else '<'}{t.topic}": rate_text(t) for t in stats.topics
                }
                child.problems = problems(stats)

    def status_table(self) -> str:
        lines = [f"{'node':<28} {'state':<14} {'pid':>7} {'restarts':>8}  rates (msgs/s; > out, < in)"]
        for child in self.children:
            pid = child.process.pid if child.process is not None else 0
            state = child.state + (f" ({child.exit_code})" if child.exit_code not in (None, 0) else "")
            rates = "  ".join(f"{topic} {rate}" for topic, rate in sorted(child.rates.items()))
            problems = f"  ! {child.problems}" if child.problems else ""
            lines.append(
                f"{child.spec.fqn:<28} {state:<14} {pid:>7} {child.restarts:>8}  {rates}{_silence(child)}{problems}"
            )
        return "\n".join(lines)

    def _say(self, text: str) -> None:
        with self._print_lock:
            print(text, file=self.out, flush=True)
