"""`percept faults CAMPAIGN`: the faults a running graph meets that are not crashes, injected into a real
launched graph (its own processes, on a private registry) while a hidden watcher measures it.

- burst: the source publishes at 10x its rate (its `rate` parameter, set through its set_parameters
  service, as `percept param set` would), then at its own rate again.
- slow: the consumer runs at a fifth of its speed: SIGSTOP and SIGCONT in 100 ms cycles, stopped 80%.
- stall: the consumer stops outright (SIGSTOP), then goes on (SIGCONT).
- service-death: a long call (the simulator's execute_grasp: the arm moves for seconds) is under way
  when its server is killed -9; the caller must learn it at once, and the respawned server answer.

The first three run three phases, before, during and after the fault, and report for each: the
source's publish rate and the consumer's receive rate (from their stats), the rate and age (arrival
minus the stamp of the frame it was made from) of the output the watcher hears, what every node
counted as lost (evicted from keep-last queues, lost in transit, malformed), restarts, and each
process's peak resident memory. "Resumed" is how long after the fault ended the first output made
from a frame taken after the end arrived. Nodes whose stats stopped for longer than 3 s, other than
the one stopped on purpose, are named: that would be a deadlock.
"""

from __future__ import annotations

import math
import os
import signal
import statistics
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perception.bench.common import stop
from perception.bench.soak import first_heard, processes, rss_mib, start_graph
from perception.errors import PerceptError
from perception.runtime.launcher import STABLE_AFTER_S

CAMPAIGNS = ("burst", "slow", "stall", "service-death")
BURST_FACTOR = 10.0
SLOW_CYCLE_S = 0.1
SLOW_STOPPED = 0.8  # of each cycle: the consumer keeps a fifth of its speed
SILENT_AFTER_S = 3.0  # a node not heard from this long is stuck
RESUME_TARGET_S = 3.0
GRAPHS = {"service-death": "sim_detect"}  # the rest: synthetic_pipeline
STARTUP_TIMEOUT_S = 60.0


@dataclass
class PhaseRow:
    phase: str  # before, during, after
    seconds: float
    source_hz: float  # frames the source published a second
    consumer_in_hz: float  # frames the consumer took a second
    output_hz: float  # output messages the watcher heard a second
    age_p50_ms: float  # output arrival minus its frame's stamp
    age_max_ms: float
    dropped_queue: int  # evicted from keep-last queues, every node, in this phase
    dropped_gap: int  # lost in transit, every node
    malformed: int
    restarts: int
    peak_rss_mib: dict[str, float] = field(default_factory=dict)


@dataclass
class CallRow:
    """One service-death round."""

    call_ended_s: float | None  # from the kill to the interrupted call's end; None: it never ended
    call_error: str  # what the caller was told
    answering_s: float | None  # from the kill to the respawned server's first answer
    frames_s: float | None  # from the kill to the first frame from the respawned server's node


@dataclass
class FaultReport:
    campaign: str
    launch: str
    phases: list[PhaseRow] = field(default_factory=list)
    resumed_s: float | None = None
    silent: list[str] = field(default_factory=list)
    calls: list[CallRow] = field(default_factory=list)


class _Watcher:
    """A hidden node on the graph's registry: every node's stats (kept with the time they arrived), the
    output topic's arrivals and ages, and the new publishers of chosen topics."""

    def __init__(self, address: str, output: str, topics: tuple[str, ...] = ()) -> None:
        from perception.msgs import NodeStats
        from perception.runtime.context import Context
        from perception.runtime.node import STATS_TOPIC, Node
        from perception.runtime.qos import LATEST_ONLY

        self.node = Node("_percept_faults", context=Context(registry=address), stats_period_s=3600.0)
        self.stats: dict[str, list[tuple[float, Any]]] = defaultdict(list)
        self.outputs: list[tuple[float, float]] = []  # (arrival, age in ms)
        self.publishers: dict[str, dict[str, float]] = defaultdict(dict)  # topic -> publisher -> first heard
        self.node.create_subscription(NodeStats, STATS_TOPIC, self._on_stats)
        self.node.create_subscription(None, output, self._on_output, LATEST_ONLY)
        for topic in topics:
            self.node.create_subscription(
                None, topic, first_heard(self.publishers[topic]), LATEST_ONLY, raw=True
            )

    def _on_stats(self, msg: Any) -> None:
        self.stats[msg.node].append((time.monotonic(), msg))

    def _on_output(self, msg: Any) -> None:
        stamp = getattr(getattr(msg, "header", None), "stamp", 0)
        self.outputs.append((time.monotonic(), (time.time_ns() - stamp) / 1e6 if stamp else math.nan))

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.node.spin_once(min(0.05, left))

    def last_stats(self, node: str, at: float) -> tuple[float, Any] | None:
        heard = [s for s in self.stats.get(node, []) if s[0] <= at]
        return heard[-1] if heard else None

    def destroy(self) -> None:
        self.node.destroy()


def run(
    campaign: str,
    launch: str | None = None,
    seconds: float = 10.0,
    source: str = "/camera",
    consumer: str = "/detector",
    output: str = "/detections",
    frames: str = "/camera/image",
    rounds: int = 5,
    arguments: list[str] | None = None,
    log: Path | None = None,
) -> FaultReport:
    """Launch the graph, wait until its output flows, inject the campaign's fault, measure."""
    from perception.installed import find_launch_file

    if campaign not in CAMPAIGNS:
        raise ValueError(f"unknown campaign {campaign!r}; campaigns: {', '.join(CAMPAIGNS)}")
    path = find_launch_file(launch or GRAPHS.get(campaign, "synthetic_pipeline"))
    launcher, address, log_file, _ = start_graph(path, arguments, log)
    watched = ("/camera/image",) if campaign == "service-death" else ()
    watcher = _Watcher(address, output, watched)
    report = FaultReport(campaign, str(path))
    try:
        started = time.monotonic()
        while not watcher.outputs and time.monotonic() - started < STARTUP_TIMEOUT_S:
            if launcher.poll() is not None:
                raise PerceptError(
                    f"the graph {path.name} ended (launcher exit {launcher.returncode}) before its output "
                    f"{output} flowed" + ("" if log else "; --log FILE keeps the graph's output")
                )
            watcher.spin_for(0.2)
        if not watcher.outputs:
            raise PerceptError(
                f"no message on {output} within {STARTUP_TIMEOUT_S:g} s of launching {path.name} "
                "(--output names the topic to time)"
            )
        watcher.spin_for(3.0)  # past the first frames' warm-up
        if campaign == "service-death":
            report.calls = [_service_death(launcher.pid, watcher, address) for _ in range(rounds)]
        else:
            _phases(campaign, report, launcher.pid, watcher, seconds, source, consumer, frames)
    finally:
        watcher.destroy()
        stop(launcher)
        if log is not None:
            log_file.close()
    return report


def _phases(
    campaign: str,
    report: FaultReport,
    launcher_pid: int,
    watcher: _Watcher,
    seconds: float,
    source: str,
    consumer: str,
    frames: str,
) -> None:
    peaks: dict[str, dict[str, float]] = defaultdict(dict)
    pids: dict[str, set[int]] = defaultdict(set)
    bounds: list[tuple[str, float, float]] = []
    victim = processes(launcher_pid).get(consumer)
    if campaign != "burst" and victim is None:
        raise PerceptError(f"no node {consumer} in the graph to {campaign}")
    nominal = _parameter(watcher, source, "rate") if campaign == "burst" else 0.0
    for phase in ("before", "during", "after"):
        begin = time.monotonic()
        if phase == "during" and campaign == "burst":
            _set_parameter(watcher, source, "rate", nominal * BURST_FACTOR)
        stopper = None  # the thread that stops and starts the consumer, while it does
        if phase == "during" and campaign in ("slow", "stall"):
            stopper = threading.Thread(target=_throttle, args=(victim, campaign, seconds))
            stopper.start()
        while time.monotonic() - begin < seconds or (stopper is not None and stopper.is_alive()):
            watcher.spin_for(0.25)
            for role, pid in processes(launcher_pid).items():
                pids[role].add(pid)
                if (rss := rss_mib(pid)) is not None:
                    peaks[phase][role] = max(peaks[phase].get(role, 0.0), round(rss, 1))
        if phase == "during":
            if stopper is not None:
                stopper.join()
            else:
                _set_parameter(watcher, source, "rate", nominal)
            ended = time.monotonic()
        bounds.append((phase, begin, time.monotonic()))
    fresh = [t for t, age in watcher.outputs if t >= ended and t - age / 1000 >= ended]
    report.resumed_s = round(fresh[0] - ended, 2) if fresh else None
    for phase, begin, end in bounds:
        report.phases.append(
            _phase_row(phase, begin, end, watcher, source, consumer, frames, peaks[phase], pids)
        )
    last = bounds[-1][2]
    report.silent = sorted(
        node
        for node, heard in watcher.stats.items()
        if not node.startswith("/_") and (last - heard[-1][0] > SILENT_AFTER_S)
    )


def _throttle(pid: int, campaign: str, seconds: float) -> None:
    """Stop the process for `seconds` (stall), or most of each cycle for `seconds` (slow)."""
    try:
        if campaign == "stall":
            os.kill(pid, signal.SIGSTOP)
            time.sleep(seconds)
        else:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                os.kill(pid, signal.SIGSTOP)
                time.sleep(SLOW_CYCLE_S * SLOW_STOPPED)
                os.kill(pid, signal.SIGCONT)
                time.sleep(SLOW_CYCLE_S * (1 - SLOW_STOPPED))
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def _phase_row(
    phase: str,
    begin: float,
    end: float,
    watcher: _Watcher,
    source: str,
    consumer: str,
    frames: str,
    peaks: dict[str, float],
    pids: dict[str, set[int]],
) -> PhaseRow:
    def counted(
        node: str, direction: str | None, field_name: str, topic: str | None = None
    ) -> tuple[float, float] | None:
        """(change over the phase, seconds between the two stats it was read from)."""
        first, last = watcher.last_stats(node, begin), watcher.last_stats(node, end)
        if first is None or last is None or last[1].pid != first[1].pid:
            return None
        totals = [
            sum(
                getattr(t, field_name)
                for t in s[1].topics
                if direction in (None, t.direction) and topic in (None, t.topic)
            )
            for s in (first, last)
        ]
        seconds = (last[1].header.stamp - first[1].header.stamp) / 1e9
        return totals[1] - totals[0], seconds

    def rate(node: str, direction: str) -> float:
        found = counted(node, direction, "count", frames)
        return round(found[0] / found[1], 1) if found and found[1] > 0 else math.nan

    def lost(field_name: str, direction: str | None = None) -> int:
        return sum(int(found[0]) for n in watcher.stats if (found := counted(n, direction, field_name)))

    ages = [age for t, age in watcher.outputs if begin <= t < end and not math.isnan(age)]
    heard = [t for t, _ in watcher.outputs if begin <= t < end]
    return PhaseRow(
        phase=phase,
        seconds=round(end - begin, 1),
        source_hz=rate(source, "pub"),
        consumer_in_hz=rate(consumer, "sub"),
        output_hz=round(len(heard) / (end - begin), 1),
        age_p50_ms=round(statistics.median(ages), 1) if ages else math.nan,
        age_max_ms=round(max(ages), 1) if ages else math.nan,
        # Subscriptions' queues alone: a publisher's count is of deliveries a local subscriber missed,
        # which that subscriber counts again as lost in transit.
        dropped_queue=lost("dropped_queue", "sub"),
        dropped_gap=lost("dropped_gap"),
        malformed=lost("malformed"),
        restarts=sum(len(p) - 1 for p in pids.values()),
        peak_rss_mib=dict(sorted(peaks.items())),
    )


def _parameter(watcher: _Watcher, node: str, name: str) -> float:
    from perception.msgs import GetParameters, ParameterValues

    client = watcher.node.create_client(f"{node}/get_parameters", GetParameters, ParameterValues)
    return float(client.call(GetParameters(names=[name]), timeout_s=5.0).values[name])


def _set_parameter(watcher: _Watcher, node: str, name: str, value: float) -> None:
    from perception.msgs import Result, SetParameters

    client = watcher.node.create_client(f"{node}/set_parameters", SetParameters, Result)
    result = client.call(SetParameters(values={name: value}), timeout_s=5.0)
    if not result.success:
        raise PerceptError(f"setting {name} of {node} to {value:g} failed: {result.message}")


def _service_death(launcher_pid: int, watcher: _Watcher, address: str, kill_after_s: float = 1.0) -> CallRow:
    """Call /sim/execute_grasp, kill -9 the simulator while its arm moves, and time what follows."""
    from perception.msgs import ExecuteGrasp, GetParameters, GraspResult, ParameterValues, Pose

    grasp = watcher.node.create_client("/sim/execute_grasp", ExecuteGrasp, GraspResult)
    if not grasp.wait_for_service(30.0):
        raise PerceptError("no /sim/execute_grasp in the graph (it runs with the tabletop scene)")
    ended: list[tuple[float, str]] = []

    def call() -> None:
        request = ExecuteGrasp(pose=Pose((0.5, 0.0, 0.05), (1.0, 0.0, 0.0, 0.0)), width=0.08, place=True)
        try:
            grasp.call(request, timeout_s=60.0)
            ended.append((time.monotonic(), "answered (the kill came too late)"))
        except PerceptError as exc:
            ended.append((time.monotonic(), f"{type(exc).__name__}: {exc}"))

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    watcher.spin_for(kill_after_s)
    pid = processes(launcher_pid).get("/sim")
    if pid is None:
        raise PerceptError("the graph has no /sim process to kill")
    before = set(watcher.publishers["/camera/image"])
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    parameters = watcher.node.create_client("/sim/get_parameters", GetParameters, ParameterValues)
    answering: float | None = None

    def new_frames() -> list[float]:
        return [t for p, t in watcher.publishers["/camera/image"].items() if p not in before]

    while time.monotonic() - killed < 30.0 and (answering is None or not ended or not new_frames()):
        watcher.spin_for(0.05)
        if answering is None:
            try:
                parameters.call(GetParameters(names=["rate"]), timeout_s=0.5)
                answering = time.monotonic()
            except PerceptError:
                pass
    new = new_frames()
    # The next round waits until the respawned server has run long enough to count as stable: killed
    # again sooner, the launcher would take it for a crash loop (and back off, then stop restarting it),
    # which is right for a node that keeps dying at start, and not the fault this campaign injects.
    watcher.spin_for(max(2.0, STABLE_AFTER_S + 1.0 - (time.monotonic() - (answering or killed))))
    call_end = ended[0] if ended else None
    return CallRow(
        call_ended_s=round(call_end[0] - killed, 2) if call_end else None,
        call_error=call_end[1] if call_end else "still waiting after 30 s",
        answering_s=round(answering - killed, 2) if answering else None,
        frames_s=round(min(new) - killed, 2) if new else None,
    )


def table(report: FaultReport) -> str:
    if report.calls:
        lines = [
            f"{'round':>5}  {'call ended after kill':>21}  {'answering again':>15}  {'frames again':>12}  told"
        ]
        for i, c in enumerate(report.calls, 1):
            lines.append(
                f"{i:>5}  {_seconds(c.call_ended_s):>21}  {_seconds(c.answering_s):>15}  "
                f"{_seconds(c.frames_s):>12}  {c.call_error}"
            )
        return "\n".join(lines)
    lines = [
        f"{'phase':<7} {'s':>5} {'source Hz':>9} {'taken Hz':>8} {'output Hz':>9} {'age p50 ms':>10} "
        f"{'age max ms':>10} {'dropped q/gap':>13} {'malformed':>9} {'restarts':>8}  peak RSS MiB"
    ]
    for p in report.phases:
        peaks = "  ".join(f"{node} {mib:g}" for node, mib in p.peak_rss_mib.items())
        lines.append(
            f"{p.phase:<7} {p.seconds:>5.1f} {p.source_hz:>9.1f} {p.consumer_in_hz:>8.1f} {p.output_hz:>9.1f} "
            f"{p.age_p50_ms:>10.1f} {p.age_max_ms:>10.1f} {p.dropped_queue:>6}/{p.dropped_gap:<6} "
            f"{p.malformed:>9} {p.restarts:>8}  {peaks}"
        )
    resumed = _seconds(report.resumed_s)
    lines.append(
        f"resumed: fresh output {resumed} after the {report.campaign} ended (target < {RESUME_TARGET_S:g} s); "
        + (f"silent nodes: {', '.join(report.silent)}" if report.silent else "every node still reporting")
    )
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return f"{value:.2f} s" if value is not None else "never"
