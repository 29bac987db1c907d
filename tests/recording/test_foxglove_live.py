"""The live Foxglove link, watched by a client speaking Foxglove's WebSocket protocol: real processes,
the foxglove-sdk server, and each message decoded from the schema its channel advertised."""

from __future__ import annotations

import json
import re
import signal
import socket
import time

import numpy as np
from conftest import free_port, percept, read_until

from perception import msgs
from perception.bench.foxglove_client import FoxgloveClient, Message
from perception.recording.foxglove import as_json

SCENE_TOPICS = ["/camera/image", "/detections", "/tracks", "/camera/camera_info", "/tf", "/percept/stats"]


def link_url(process) -> str:
    said = read_until(process, "Foxglove link at ws://", 30)
    found = re.search(r"ws://[\d.]+:\d+", said)
    assert found, said
    return found.group(0)


def collect(client: FoxgloveClient, wanted: dict[str, int], timeout_s: float) -> dict[str, list[Message]]:
    got: dict[str, list[Message]] = {topic: [] for topic in wanted}
    deadline = time.monotonic() + timeout_s
    while any(len(got[t]) < n for t, n in wanted.items()) and time.monotonic() < deadline:
        message = client.receive(0.5)
        if message is not None:
            got.setdefault(message.channel.topic, []).append(message)
    assert all(len(got[t]) >= n for t, n in wanted.items()), {t: len(m) for t, m in got.items()}
    return got


def stamp_ns(timestamp) -> int:
    return timestamp.seconds * 1_000_000_000 + timestamp.nanos


def test_foxglove_sees_images_boxes_tracks_calibration_transforms_and_stats(registry, spawn):
    spawn(node="FoxgloveScene")
    link = spawn("foxglove", "--port", "0")
    with FoxgloveClient(link_url(link)) as client:
        channels = client.wait_for_topics(SCENE_TOPICS, 20)
        schemas = {topic: (c.encoding, c.schema_name) for topic, c in channels.items()}
        assert schemas == {
            "/camera/image": ("protobuf", "foxglove.RawImage"),
            "/detections": ("protobuf", "foxglove.ImageAnnotations"),
            "/tracks": ("protobuf", "foxglove.ImageAnnotations"),
            "/camera/camera_info": ("protobuf", "foxglove.CameraCalibration"),
            "/tf": ("protobuf", "foxglove.FrameTransform"),
            "/percept/stats": ("json", "percept/NodeStats"),
        }
        client.subscribe(list(channels.values()))
        got = collect(client, {t: 3 for t in SCENE_TOPICS}, 20)

    images = [m.decode() for m in got["/camera/image"]]
    for image in images:  # the scene's grey frame with a white square on rows 95-114
        assert (image.width, image.height, image.encoding, image.step) == (160, 120, "rgb8", 480)
        pixels = np.frombuffer(image.data, np.uint8).reshape(120, 160, 3)
        assert pixels[0, 0].tolist() == [90, 90, 90]
        assert int((pixels[95:115] == 255).all(axis=2).sum()) == 20 * 20
    boxes = [m.decode() for m in got["/detections"]]
    outline = boxes[0].points[0]
    assert [(p.x, p.y) for p in outline.points] == [(40, 30), (120, 30), (120, 90), (40, 90)]
    assert boxes[0].texts[0].text == "mug 0.90"
    # An image and its boxes carry one stamp: Foxglove's Image panel pairs them by it.
    image_stamps = {stamp_ns(i.timestamp) for i in images}
    box_stamps = {stamp_ns(b.points[0].timestamp) for b in boxes}
    assert image_stamps & box_stamps
    assert got["/tracks"][0].decode().texts[0].text == "#5 mug"
    calibration = got["/camera/camera_info"][0].decode()
    assert list(calibration.K) == [200, 0, 80, 0, 201, 60, 0, 0, 1]
    assert calibration.frame_id == "camera" and (calibration.width, calibration.height) == (160, 120)
    transform = got["/tf"][0].decode()
    assert (transform.parent_frame_id, transform.child_frame_id) == ("world", "camera")
    assert (transform.translation.x, transform.translation.z, transform.rotation.x) == (0.5, 1.2, 1.0)
    stats = got["/percept/stats"][0].decode()
    assert stats["node"] in {"/viewer_scene", "/foxglove"} and isinstance(stats["topics"], list)

    # With nobody subscribed, messages are no longer converted: counted as unwatched when it stops.
    time.sleep(1.5)
    link.send_signal(signal.SIGINT)
    said = read_until(link, "Foxglove link stopped", 15)
    counts = re.search(r"(\d+) messages sent, (\d+) unwatched, (\d+) thinned by max_fps, (\d+) failed", said)
    assert counts, said
    sent, unwatched, thinned, failed = map(int, counts.groups())
    assert sent >= 18 and unwatched >= 10 and thinned == 0 and failed == 0
    assert link.wait(timeout=10) == 0


def test_a_launch_file_starts_the_link_and_max_fps_keeps_images_and_their_boxes_together(
    registry, spawn, tmp_path
):
    from conftest import TESTS

    port = free_port()
    launch = tmp_path / "watched.yaml"
    launch.write_text(
        "nodes:\n"
        f"  - node: {TESTS / 'nodes.py'}:FoxgloveScene\n"
        "  - node: perception.recording.live:FoxgloveLink\n"
        f"    parameters: {{port: {port}, max_fps: 4.0, topics: [/camera/image, /detections]}}\n"
    )
    spawn("launch", str(launch))
    deadline = time.monotonic() + 30
    while True:  # the launch starts both processes; the link listens once its node is built
        try:
            client = FoxgloveClient(f"ws://127.0.0.1:{port}", timeout_s=2)
            break
        except OSError:
            assert time.monotonic() < deadline, "the launched link never listened"
            time.sleep(0.3)
    with client:
        channels = client.wait_for_topics(["/camera/image", "/detections"], 20)
        assert sorted(c.topic for c in client.channels.values()) == ["/camera/image", "/detections"]
        client.subscribe(list(channels.values()))
        collect(client, {"/camera/image": 1}, 10)  # flowing
        window: dict[str, list[int]] = {"/camera/image": [], "/detections": []}
        start = time.monotonic()
        while time.monotonic() - start < 3.0:
            message = client.receive(0.5)
            if message is not None:
                decoded = message.decode()
                is_image = message.channel.topic == "/camera/image"
                stamp = decoded.timestamp if is_image else decoded.points[0].timestamp
                window[message.channel.topic].append(stamp_ns(stamp))
    images, boxes = window["/camera/image"], window["/detections"]
    # The scene publishes 10 a second and at most 4 a second pass: every third frame, 10 in 3 s. The check
    # of one per quarter second below is what max_fps promises; the lower bound here asks only that images
    # still flow, as a busy machine may stall the scene for a while.
    assert 4 <= len(images) <= 16, images
    assert len({stamp // 250_000_000 for stamp in images}) == len(images)  # one per quarter second
    assert len(set(images) & set(boxes)) >= min(len(images), len(boxes)) - 1  # the same frames


def test_with_a_keystore_the_link_starts_only_when_told_that_any_local_user_may_read_it(
    keyed_registry, spawn, monkeypatch
):
    """Audit finding 4: with a keystore keeping other users out of the graph, `percept foxglove` on
    loopback handed them its topics (any WebSocket client got the channels): foxglove-sdk's server has
    no authentication to ask them for."""
    monkeypatch.setenv("PERCEPT_ENCLAVE", "foxglove")
    refused = percept("foxglove", "--port", "0", "--duration", "1")
    assert refused.returncode == 1 and "Foxglove link at" not in refused.stdout + refused.stderr
    assert refused.stderr.splitlines()[-1] == (
        f"percept: error: Foxglove link on 127.0.0.1:0: not started, the graph has a keystore "
        f"({keyed_registry}) and foxglove-sdk's WebSocket server has no authentication, so any local user "
        "could read the graph's topics through it; to serve it anyway: --allow-unauthenticated (in a "
        "launch file: allow_unauthenticated: true), or watch it in `percept view`, which asks for a token"
    ), refused.stderr
    assert "--allow-unauthenticated" in percept("foxglove", "--help").stdout

    spawn(node="FoxgloveScene", env={"PERCEPT_ENCLAVE": "viewer_scene"})
    link = spawn("foxglove", "--port", "0", "--allow-unauthenticated")
    warning = "can read every topic this link serves"
    said = read_until(link, "Foxglove link at ws://", 30)
    if warning not in said:  # the warning comes before the address or after it
        said += read_until(link, warning, 10)
    found = re.search(r"ws://[\d.]+:\d+", said)
    assert found, said
    url = found.group(0)
    assert "[WARNING] [/foxglove] allow_unauthenticated: the graph has a keystore, but any local user" in said
    with FoxgloveClient(url) as client:  # through the keystore's CURVE to the scene, out to anyone
        client.subscribe([client.wait_for_topics(["/camera/image"], 30)["/camera/image"]])
        image = collect(client, {"/camera/image": 2}, 20)["/camera/image"][0].decode()
    assert (image.width, image.height) == (160, 120)


def test_bad_input_to_the_link_gets_a_one_line_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = percept("foxglove", "--port", str(port), "--duration", "1")
    assert result.returncode == 1
    last = result.stderr.splitlines()[-1]
    assert re.fullmatch(rf"percept: error: cannot serve Foxglove on 127.0.0.1:{port}: .+", last), (
        result.stderr
    )
    result = percept("foxglove", "--port", "70000")
    assert result.returncode == 2 and "--port: expected a port from 0 to 65535, found 70000" in result.stderr


def test_messages_without_a_foxglove_schema_go_as_json_readable_in_a_panel():
    stats = msgs.TopicStats(topic="/x", type_name="percept/Image", direction="sub", count=3)
    header = msgs.Header(stamp=1_700_000_000_123_456_789, frame_id="camera", seq=4)
    stamp = {"sec": 1_700_000_000, "nsec": 123_456_789}
    assert as_json(header) == {"stamp": stamp, "frame_id": "camera", "seq": 4}
    assert as_json(stats)["count"] == 3
    assert as_json(np.array([1.5, np.nan, np.inf])) == [1.5, None, None]  # JSON has no NaN
    assert as_json(np.zeros((480, 640), np.float32)) == "<array 480x640 float32>"
    assert as_json({"k": np.int64(3), "b": b"abc"}) == {"k": 3, "b": "<3 bytes>"}


def advertised(client: FoxgloveClient) -> set[str]:
    return {channel.topic for channel in client.channels.values()}


def test_a_node_that_leaves_is_unadvertised_and_advertised_again_when_it_comes_back(registry, spawn):
    """Channels were only ever added: a stopped node's topics stayed in Foxglove's list for good, their
    panels frozen on the last frame."""
    spawn(node="FoxgloveScene")
    link = spawn("foxglove", "--port", "0")
    b_topics = ["/b/camera/image", "/b/detections", "/b/tracks", "/b/camera/camera_info"]
    with FoxgloveClient(link_url(link)) as client:
        client.wait_for_topics(SCENE_TOPICS, 30)
        b = spawn("--namespace", "/b", node="FoxgloveScene")
        joined = client.wait_for_topics(b_topics, 30)
        tf = client.wait_for_topics(["/tf"], 1)["/tf"]  # both cameras' transforms go there

        b.send_signal(signal.SIGINT)
        assert b.wait(timeout=15) == 0
        deadline = time.monotonic() + 15
        while advertised(client) & set(b_topics) and time.monotonic() < deadline:
            client.receive(0.1)
        assert not advertised(client) & set(b_topics), sorted(advertised(client))
        said = read_until(link, ": Foxglove channels closed", 10)
        closed = re.search(r"no publisher left for (.+): Foxglove channels closed", said)
        assert closed and sorted(closed.group(1).split(", ")) == sorted(b_topics), said
        # The first camera's topics stay, /tf with them (it still carries the first camera's transform).
        assert set(SCENE_TOPICS) <= advertised(client) and tf.id in client.channels
        client.subscribe([client.wait_for_topics(["/camera/image"], 1)["/camera/image"]])
        collect(client, {"/camera/image": 2}, 10)

        spawn("--namespace", "/b", node="FoxgloveScene")
        again = client.wait_for_topics(b_topics, 30)
        assert all(again[t].id != joined[t].id for t in b_topics)  # advertised anew
        assert client.channels[tf.id].topic == "/tf"


def test_a_client_lost_or_refused_gets_one_line_that_says_what_happened(registry, spawn):
    """One stalled client going away had the SDK log 127 lines "Error sending message to client ...:
    Broken pipe"; a client offering only the protocol's first subprotocol name was refused with
    "handshake failed", which did not say why."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    spawn(node="FoxgloveScene")
    link = spawn("foxglove", "--port", "0")
    url = link_url(link)
    port = int(url.rsplit(":", 1)[1])
    with FoxgloveClient(url) as client:
        ids = [c.id for c in client.wait_for_topics(SCENE_TOPICS, 30).values()]
    # A client that subscribes to everything and never reads, then goes (its socket closed unread: a reset).
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", port))
    stalled.sendall(
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Protocol: foxglove.sdk.v1\r\n\r\n"
    )
    assert stalled.recv(12) == b"HTTP/1.1 101"
    subscribe = json.dumps(
        {"op": "subscribe", "subscriptions": [{"id": i, "channelId": c} for i, c in enumerate(ids)]}
    )
    stalled.sendall(masked_text_frame(subscribe.encode()))
    said = read_until(link, "subscribed to /percept/stats", 10)
    time.sleep(3)  # the server's sends back up behind it
    stalled.close()
    said += read_until(link, "no such line", 4)

    # Lichtblick, older Foxglove Studio and @foxglove/ws-protocol clients offer only the first name.
    try:
        connect(url, subprotocols=["foxglove.websocket.v1"], open_timeout=10)  # type: ignore[list-item]
        raise AssertionError("a client offering only foxglove.websocket.v1 was let in")
    except InvalidStatus as refused:
        assert refused.response.status_code == 400
    said += read_until(link, "refused at the WebSocket handshake", 10)

    lines = said.splitlines()
    gone = [line for line in lines if " gone (" in line]
    assert len(gone) == 1 and re.fullmatch(
        r"\[WARNING\] \[[\w.]+\] Foxglove client 127\.0\.0\.1:\d+ gone \(.+\); dropped what was queued for it",
        gone[0],
    ), said
    assert not [line for line in lines if "Error sending" in line or "Error receiving" in line], said
    (refusal,) = [line for line in lines if "refused at the WebSocket handshake" in line]
    assert "not offering the subprotocol foxglove.sdk.v1 (the Foxglove app), which is all" in refusal
    assert "only foxglove.websocket.v1 (Lichtblick, older Foxglove Studio) cannot connect" in refusal
    # --help says so before anyone tries.
    told = " ".join(percept("foxglove", "--help").stdout.split())
    assert "accepts only clients offering the subprotocol foxglove.sdk.v1" in told
    assert "offer only foxglove.websocket.v1 and are refused" in told


def masked_text_frame(data: bytes) -> bytes:
    """A client's WebSocket text frame (clients must mask theirs; the mask here is zero)."""
    assert len(data) < 65536
    length = (
        bytes([0x80 | len(data)]) if len(data) < 126 else bytes([0x80 | 126]) + len(data).to_bytes(2, "big")
    )
    return b"\x81" + length + b"\x00\x00\x00\x00" + data
