"""Detections paired with the other topics of their frame (depth, camera info), which come on sockets of
their own and may come after them: one wiring, so the tracker and the grasp planner wait alike.
(Not a node: the leading underscore keeps it off the list of nodes that ship, `percept run NAME`.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from perception.msgs import Detections
from perception.runtime.node import Node
from perception.runtime.sync import StampBuffer, Synchronizer

WAIT_S = 0.1  # a frame's partners come within milliseconds of its detections unless a publisher stopped


def detections_paired_with(
    node: Node, partners: list[tuple[type[Any], str, StampBuffer[Any]]], handle: Callable[[Detections], None]
) -> Synchronizer[Detections]:
    """Subscribe to `detections` and to each partner (type, topic, buffer); call `handle` with each
    detections message once every partner that is publishing has sent its frame, or after `pair_wait_s`."""
    wait_s = node.declare_parameter(
        "pair_wait_s",
        WAIT_S,
        "longest detections wait for their frame's "
        + " and ".join(topic for _, topic, _ in partners)
        + " (s)",
        read_only=True,
        range=(0.0, 10.0),
    )
    sync: Synchronizer[Detections] = Synchronizer([buffer for _, _, buffer in partners], handle, wait_s)
    for msg_type, topic, buffer in partners:
        node.create_subscription(msg_type, topic, sync.partner(buffer))
    node.create_subscription(Detections, "detections", sync.drive)
    if wait_s > 0:
        node.create_timer(max(wait_s / 4, 0.005), sync.expire)  # a held message's time runs out
    return sync


def hand_on_held(node: Node, sync: Synchronizer[Detections]) -> None:
    """At shutdown: the detections still waiting for their partners go on, not lost unseen; an error in
    handling them is logged, not raised out of the node's destroy()."""
    held = len(sync.held)
    try:
        sync.flush()
    except Exception:
        node.log.exception("handing on the %d detections held at shutdown", held)
