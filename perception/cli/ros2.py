"""percept ros2: join a ROS 2 graph without ROS (the `ros2` extra: Cyclone DDS and rosbags).

percept ros2 bridge                          the default mapping: a camera driver's image_raw and
                                             camera_info in, detections, tracks and grasps out
percept ros2 bridge --domain-id 7 -p 'topics:=[{ros: /zed/left/image, type: sensor_msgs/msg/Image, ours: /camera/image}]'
percept ros2 topics                          what the ROS 2 graph offers, like `ros2 topic list -t`
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from perception.cli.common import DefaultsFormatter, non_negative_float
from perception.runtime import runner

TOPICS_HELP = """\
the bridge's `topics` parameter (-p 'topics:=[...]' or --params-file) is a list of rows:
  ros        the ROS 2 topic, absolute (/camera/image_raw)
  type       its ROS 2 message type (sensor_msgs/msg/Image)
  ours       our topic (a relative one is under --ns)
  direction  in or out; images and camera info come in unless `direction: out`
  as         our type where one ROS type carries several (Tracks for a Detection2DArray)
  qos        sensor_data, reliable or transient_local; none: in, adapt to the writers; out, reliable
  depth      the history kept, 1 to 1000
the default and an example of your own: README.md, "On a ROS 2 robot"
"""


class _Formatter(DefaultsFormatter, argparse.RawDescriptionHelpFormatter):
    """States defaults, and keeps the epilog's table as written."""


def register(verbs: Any) -> None:
    ros2 = verbs.add_parser("ros2", help="Join a ROS 2 graph over DDS, no ROS install (the ros2 extra).")
    actions = ros2.add_subparsers(dest="ros2_verb", metavar="VERB", required=True)
    p = actions.add_parser(
        "bridge",
        help="Map ROS 2 topics to ours and ours to ROS 2's (the node perception.nodes.ros2_bridge).",
        epilog=TOPICS_HELP,
        formatter_class=_Formatter,
    )
    p.add_argument("--domain-id", type=int, help="the ROS 2 domain (default: $ROS_DOMAIN_ID, else 0)")
    runner.add_override_arguments(p)
    p.set_defaults(func=_bridge)
    p = actions.add_parser("topics", help="The topics writers offer on a ROS 2 domain, with their types.")
    p.add_argument("--domain-id", type=int, help="the ROS 2 domain (default: $ROS_DOMAIN_ID, else 0)")
    p.add_argument(
        "--wait", type=non_negative_float, default=2.0, help="seconds to listen for writers (default 2)"
    )
    p.set_defaults(func=_topics)


def _bridge(args: argparse.Namespace) -> int:
    from perception.installed import require

    require("cyclonedds", "percept ros2 bridge")
    require("rosbags", "percept ros2 bridge")
    from perception.nodes.ros2_bridge import Ros2Bridge

    runner.configure_logging(args.log_level)
    overrides = runner.overrides_from(args)
    if args.domain_id is not None:
        overrides.parameters["domain_id"] = args.domain_id
    return runner.spin_node(Ros2Bridge, overrides)


def _topics(args: argparse.Namespace) -> int:
    from perception.installed import require

    require("cyclonedds", "percept ros2 topics")
    require("rosbags", "percept ros2 topics")
    from perception.ros2.dds import Participant
    from perception.ros2.types import default_domain_id, ros_type_name

    participant = Participant(default_domain_id() if args.domain_id is None else args.domain_id)
    try:
        time.sleep(args.wait)
        offered = participant.published_topics()
    finally:
        participant.close()
    if not offered:
        print(f"no ROS 2 topics on domain {participant.domain_id} after {args.wait:g} s")
        return 0
    for topic, dds_type in sorted(offered.items()):
        print(f"{topic} [{ros_type_name(dds_type)}]")
    return 0
