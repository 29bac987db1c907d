"""ROS 2 without ROS: message layouts (types), conversions to and from ours (convert), DDS carrying
CDR (dds) and the bridge's topic mapping (mapping). Plain libraries: the node is
perception/nodes/ros2_bridge.py."""
