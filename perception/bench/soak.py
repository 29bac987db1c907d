"""`percept soak LAUNCH`: run a launched graph for minutes (or hours) and watch it the way a robot's
operator would: each node's resident memory, message rates and losses over time, its restarts, and,
with `--kill-every`, how fast the graph heals when its nodes (and its registry) are killed outright.

The graph runs as `percept launch FILE` in its own process group, on a private registry address, so it
never meets a graph already running. A hidden watcher node takes every node's stats (rates, queue and
transit losses, malformed messages) and subscribes to every topic the graph publishes. Every second the
watcher reads each node process's resident memory from /proc.

A kill (SIGKILL, round robin over the nodes that respawn, then the registry) is healed when a message
arrives on each topic the killed node published, from a publisher that did not exist before the kill
(its publisher id is new); a killed registry is healed when a node joining after the kill receives a
message through it. Memory growth is measured per process, from its state 30 s after it started (or
from the first sample, in shorter runs) to its last sample.
"""

from __future__ import annotations

import math
import os
import signal
import statistics
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perception.bench.common import free_port, spawn_cli, stop

if TYPE_CHECKING:
    from perception.runtime.launch_file import LaunchDescription

WARM_UP_S = 30.0  # memory is compared from this long after a process starts (imports, first frames)
HEAL_TIMEOUT_S = 30.0


@dataclass
class NodeRow:
    node: str
    pids: list[int]
    restarts: int
    rss_start_mib: float
    rss_end_mib: float
    rss_growth_pct: float
    rates: dict[str, float]  # topic (> published, < received) -> mean messages/s
    dropped_queue: int
    dropped_gap: int
    malformed: int


@dataclass
class KillRow:
    at_s: float
    target: str
    healed_s: float | None  # None: not within HEAL_TIMEOUT_S
    unhealed: str = ""  # why not, as far as the soak can see: no process, or one not heard from


@dataclass
class Report:
    launch: str
    minutes: float
    nodes: list[NodeRow]
    kills: list[KillRow]
    series: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # node -> (t, RSS MiB)
    rate_series: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # topic -> (t, msgs/s)


def rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def processes(launcher_pid: int) -> dict[str, int]:
    """The launcher's children by role: each node by its --name, and "registry"."""
    found: dict[str, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            if parent != launcher_pid:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                args = cmdline.read().decode(errors="replace").split("\0")
        except (OSError, ValueError, IndexError):
            continue
        if "registry" in args:
            found["registry"] = int(entry)
        elif "--name" in args:
            namespace = args[args.index("--namespace") + 1] if "--namespace" in args else "/"
            name = args[args.index("--name") + 1]
            found[namespace.rstrip("/") + "/" + name] = int(entry)
    return found


def start_graph(
    path: Path, arguments: list[str] | None, log: Path | None
) -> tuple[subprocess.Popen[Any], str, Any, LaunchDescription]:
    """`percept launch PATH` in its own process group on a private registry: the launcher, the
    registry's address, where its output goes (a file to close, or DEVNULL), and what it launches.
    The file is read with its arguments here first, so that a mistake in either is named before
    anything starts, not lost in the graph's output."""
    from perception.runtime import launch_file
    from perception.runtime.runner import yaml_assignments

    description = launch_file.load(path, yaml_assignments(arguments, "launch argument"))
    address = f"tcp://127.0.0.1:{free_port()}"
    env = {**os.environ, "PERCEPT_REGISTRY": address, "PYTHONUNBUFFERED": "1"}
    output = open(log, "w") if log is not None else subprocess.DEVNULL  # noqa: SIM115 (the caller's)
    launcher = spawn_cli(
        "launch",
        str(path),
        *(arguments or []),
        "--status-period",
        "0",
        env=env,
        start_new_session=True,
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    return launcher, address, output, description


def first_heard(publishers: dict[str, float]) -> Callable[[Any], None]:
    """A raw subscription's callback that notes when each publisher of the topic was first heard (its
    publisher id is new after a restart: that is how a kill is seen to heal)."""

    def heard(frames: Any) -> None:
        from perception.runtime import wire

        try:
            publisher, _ = wire.peek_sequence(frames)
        except Exception:  # a malformed message has no publisher to time
            return
        publishers.setdefault(publisher, time.monotonic())

    return heard


def run(
    launch: str,
    minutes: float,
    kill_every_s: float | None = None,
    arguments: list[str] | None = None,
    sample_s: float = 1.0,
    log: Path | None = None,
) -> Report:
    """Run the graph; its own output (the launcher's and its nodes') goes to `log`, or nowhere."""
    from perception.installed import find_launch_file
    from perception.msgs import NodeStats
    from perception.runtime.context import Context
    from perception.runtime.node import STATS_TOPIC, Node
    from perception.runtime.qos import LATEST_ONLY

    path = find_launch_file(launch)
    launcher, address, output, described = start_graph(path, arguments, log)
    respawning = [s.fqn for s in described.nodes if s.respawn]
    watcher = Node("_percept_soak", context=Context(registry=address), stats_period_s=3600.0)
    stats: dict[str, NodeStats] = {}
    rate_sums: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    rate_series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    first_seen: dict[int, float] = {}
    rss_by_pid: dict[int, list[tuple[float, float]]] = defaultdict(list)
    pids: dict[str, list[int]] = defaultdict(list)
    # topic -> publisher ids seen, and when each was first heard
    publishers: dict[str, dict[str, float]] = defaultdict(dict)
    subscribed: set[str] = set()
    kills: list[KillRow] = []
    start = time.monotonic()

    def on_stats(msg: NodeStats) -> None:
        stats[msg.node] = msg
        now = time.monotonic() - start
        for topic in msg.topics:
            if topic.direction == "pub" and topic.topic != STATS_TOPIC:
                rate_sums[msg.node][f">{topic.topic}"].append(topic.msgs_per_s)
                rate_series[topic.topic].append((now, topic.msgs_per_s))
            elif topic.direction == "sub":
                rate_sums[msg.node][f"<{topic.topic}"].append(topic.msgs_per_s)

    watcher.create_subscription(NodeStats, STATS_TOPIC, on_stats)
    deadline = start + minutes * 60
    next_sample = start
    next_kill = start + kill_every_s if kill_every_s else math.inf
    victims = [*respawning, "registry"]
    try:
        while time.monotonic() < deadline and launcher.poll() is None:
            watcher.spin_once(0.05)
            for msg in list(stats.values()):  # every topic the graph publishes, once
                for topic in msg.topics:
                    if (
                        topic.direction == "pub"
                        and topic.topic not in subscribed
                        and topic.topic != STATS_TOPIC
                    ):
                        subscribed.add(topic.topic)
                        watcher.create_subscription(
                            None, topic.topic, first_heard(publishers[topic.topic]), LATEST_ONLY, raw=True
                        )
            now = time.monotonic()
            if now >= next_sample:
                next_sample = now + sample_s
                for role, pid in processes(launcher.pid).items():
                    rss = rss_mib(pid)
                    if rss is None:
                        continue
                    first_seen.setdefault(pid, now)
                    if pid not in pids[role]:
                        pids[role].append(pid)
                    rss_by_pid[pid].append((now - start, rss))
                    series[role].append((now - start, rss))
            if now >= next_kill and victims:
                target = victims[len(kills) % len(victims)]
                kills.append(_kill(launcher.pid, target, stats, publishers, watcher, address, start))
                next_kill = time.monotonic() + kill_every_s  # type: ignore[operator]
    finally:
        watcher.destroy()
        stop(launcher)
        if log is not None:
            output.close()  # type: ignore[union-attr]
    nodes = []
    for role in sorted(pids):
        lifetimes = [rss_by_pid[p] for p in pids[role] if rss_by_pid[p]]
        longest = max(lifetimes, key=len) if lifetimes else []
        settled = [s for s in longest if s[0] - longest[0][0] >= WARM_UP_S] or longest
        begin, end = (settled[0][1], settled[-1][1]) if settled else (math.nan, math.nan)
        last = stats.get(role)
        topics = last.topics if last is not None else []
        nodes.append(
            NodeRow(
                node=role,
                pids=pids[role],
                restarts=len(pids[role]) - 1,
                rss_start_mib=round(begin, 1),
                rss_end_mib=round(end, 1),
                rss_growth_pct=round(100 * (end - begin) / begin, 1) if begin else math.nan,
                rates={t: round(statistics.mean(v), 2) for t, v in rate_sums[role].items() if v},
                dropped_queue=sum(t.dropped_queue for t in topics),
                dropped_gap=sum(t.dropped_gap for t in topics),
                malformed=sum(t.malformed for t in topics),
            )
        )
    return Report(str(path), minutes, nodes, kills, dict(series), dict(rate_series))


def _kill(
    launcher_pid: int,
    target: str,
    stats: dict[str, Any],
    publishers: dict[str, dict[str, float]],
    watcher: Any,
    address: str,
    start: float,
) -> KillRow:
    from perception.runtime.node import STATS_TOPIC

    pid = processes(launcher_pid).get(target)
    at = time.monotonic()
    if pid is None:
        return KillRow(round(at - start, 1), target, None)
    if target == "registry":
        os.kill(pid, signal.SIGKILL)
        return KillRow(round(at - start, 1), target, _registry_healed(address, at))
    topics = [t.topic for t in getattr(stats.get(target), "topics", []) if t.direction == "pub"]
    topics = [t for t in topics if t != STATS_TOPIC and publishers.get(t)]  # heard before the kill
    before = {t: set(publishers[t]) for t in topics}
    os.kill(pid, signal.SIGKILL)
    while time.monotonic() - at < HEAL_TIMEOUT_S:
        watcher.spin_once(0.02)
        if all(set(publishers[t]) - before[t] for t in topics):
            healed = (
                max(min(publishers[t][s] for s in set(publishers[t]) - before[t]) for t in topics)
                if topics
                else time.monotonic()
            )
            return KillRow(round(at - start, 1), target, round(healed - at, 2))
    now = processes(launcher_pid).get(target)
    silent = [t for t in topics if not set(publishers[t]) - before[t]]
    why = (
        f"the launcher runs it again (pid {now}), but nothing new was heard on {', '.join(silent)}"
        if now is not None and now != pid
        else "the launcher has not started it again"
    )
    return KillRow(round(at - start, 1), target, None, why)


def _registry_healed(address: str, killed_at: float) -> float | None:
    """Seconds from the kill until a node that joins afterwards receives a message through the new
    registry (on /percept/stats, which every node publishes)."""
    from perception.msgs import NodeStats
    from perception.runtime.context import Context
    from perception.runtime.node import STATS_TOPIC, Node

    got: list[float] = []
    newcomer = Node("_percept_soak_newcomer", context=Context(registry=address), stats_period_s=3600.0)
    newcomer.create_subscription(NodeStats, STATS_TOPIC, lambda m: got.append(time.monotonic()))
    try:
        while not got and time.monotonic() - killed_at < HEAL_TIMEOUT_S:
            newcomer.spin_once(0.02)
    finally:
        newcomer.destroy()
    return round(got[0] - killed_at, 2) if got else None


def table(report: Report) -> str:
    lines = [
        f"{'node':<22} {'restarts':>8} {'RSS MiB start -> end':>21} {'growth':>7} {'dropped q/gap':>14} "
        f"{'malformed':>9}  rates (msgs/s; > out, < in)"
    ]
    for n in report.nodes:
        rates = "  ".join(f"{t} {r:g}" for t, r in sorted(n.rates.items()))
        lines.append(
            f"{n.node:<22} {n.restarts:>8} {n.rss_start_mib:>10.1f} -> {n.rss_end_mib:>7.1f} "
            f"{n.rss_growth_pct:>6.1f}% {n.dropped_queue:>7}/{n.dropped_gap:<6} {n.malformed:>9}  {rates}"
        )
    if report.kills:
        lines.append("")
        lines.append(f"{'kill -9 at s':>12}  {'target':<22} healed in")
        for k in report.kills:
            healed = (
                f"{k.healed_s:.2f} s"
                if k.healed_s is not None
                else f"not within {HEAL_TIMEOUT_S:g} s: {k.unhealed}"
            )
            lines.append(f"{k.at_s:>12.1f}  {k.target:<22} {healed}")
        by_target: dict[str, list[float]] = defaultdict(list)
        for k in report.kills:
            if k.healed_s is not None:
                by_target[k.target].append(k.healed_s)
        for target, times in sorted(by_target.items()):
            lines.append(
                f"{'':>12}  {target:<22} p50 {statistics.median(times):.2f} s, max {max(times):.2f} s over {len(times)}"
            )
    return "\n".join(lines)


def plot(report: Report, path: Path) -> Path:
    """Resident memory per node and publish rates over time, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (memory, rates) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for node, points in sorted(report.series.items()):
        memory.plot([p[0] for p in points], [p[1] for p in points], label=node, linewidth=1)
    memory.set_ylabel("resident memory (MiB)")
    memory.legend(fontsize=7, loc="upper left")
    for topic, points in sorted(report.rate_series.items()):
        rates.plot([p[0] for p in points], [p[1] for p in points], label=topic, linewidth=1)
    for k in report.kills:
        for axis in (memory, rates):
            axis.axvline(k.at_s, color="grey", linewidth=0.5, linestyle=":")
    rates.set_ylabel("published messages/s")
    rates.set_xlabel("seconds")
    rates.legend(fontsize=7, loc="upper left")
    figure.suptitle(f"percept soak {Path(report.launch).stem}, {report.minutes:g} min")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
