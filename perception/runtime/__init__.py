"""The node runtime, split as rclpy splits it: one module each for the publisher, subscription, timer,
service and client; the node and its executor (node); the ZeroMQ sockets (transport) and the wire format
(wire); discovery (registry, registry_link); processes (runner, launcher, launch_file); names, QoS,
parameters, stats, stop requests and stamp synchronisation; and an in-process harness for tests.

It imports the messages and errors below it and nothing of the tools above it (cli, bench, viewer,
train, recording): tests/test_layers.py holds it to that.
"""
