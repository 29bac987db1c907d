"""MCAP recording and replay: byte-identical arrays, preserved timing, files cut short still readable."""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest

from perception import Node, QoS
from perception.msgs import Detections, Header, Image
from perception.recording.mcap_file import McapRecorder, read, topics_of
from perception.runtime.wire import decode


def test_record_then_play_gives_the_same_bytes_with_the_same_timing(tmp_path, registry, context, spawn):
    from conftest import spin_until

    output = tmp_path / "run.mcap"
    sent: list[Image] = []
    with Node("source", context=context) as node:
        images = node.create_publisher(Image, "/camera/image")
        boxes = node.create_publisher(Detections, "/detections")
        recorder = spawn("record", "/camera/image", "/detections", "-o", str(output))
        spin_until(
            node,
            lambda: images.subscriber_count and boxes.subscriber_count,
            timeout_s=20,
            what="the recorder",
        )
        rng = np.random.default_rng(0)
        for i in range(20):  # 20 frames at 10 Hz, and detections for every other one
            header = Header(stamp=time.time_ns(), frame_id="cam", seq=i)
            image = Image(
                header=header, data=rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), encoding="rgb8"
            )
            images.publish(image)
            sent.append(image)
            if i % 2 == 0:
                boxes.publish(
                    Detections(
                        header=header, xyxy=[[1, 2, 3, 4]], scores=[0.5], class_ids=[1], class_names=["mug"]
                    )
                )
            node.spin_once(0.1)
        # Stopped at once: what is still on its way is drained and written before the file closes.
        recorder.send_signal(signal.SIGINT)
        out, _ = recorder.communicate(timeout=20)
    assert recorder.returncode == 0, out
    assert "wrote 30 messages" in out and "dropped 0" in out
    assert topics_of(output) == {"/camera/image": "percept/Image", "/detections": "percept/Detections"}
    check_foxglove_views(output, sent)
    received: list[tuple[float, Image]] = []
    with Node("viewer", context=context) as node:
        node.create_subscription(Image, "/camera/image", lambda m: received.append((time.monotonic(), m)))
        player = spawn("play", str(output), "--topics", "/camera/image", "--wait", "60")
        spin_until(node, lambda: len(received) == 20, timeout_s=30, what="the replayed frames")
        player.wait(timeout=20)
    for (_, got), original in zip(received, sent, strict=True):
        assert got.header == original.header
        assert got.data.tobytes() == original.data.tobytes() and got.data.shape == original.data.shape
    gaps = np.diff([t for t, _ in received])
    assert abs(float(np.median(gaps)) - 0.1) < 0.03, gaps  # the 10 Hz of the recording


def check_foxglove_views(path, sent: list[Image]) -> None:
    """The Foxglove channels, read with the mcap library and decoded from the schemas in the file alone
    (as Foxglove does), hold the same frames and the boxes."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from mcap.reader import make_reader

    with open(path, "rb") as stream:
        reader = make_reader(stream)
        channels = reader.get_summary().channels
        schemas = {c.topic: reader.get_summary().schemas[c.schema_id] for c in channels.values()}
        assert {t: (s.name, s.encoding) for t, s in schemas.items() if t.startswith("/foxglove")} == {
            "/foxglove/camera/image": ("foxglove.RawImage", "protobuf"),
            "/foxglove/detections": ("foxglove.ImageAnnotations", "protobuf"),
        }
        classes = {}
        for topic in ("/foxglove/camera/image", "/foxglove/detections"):
            pool = descriptor_pool.DescriptorPool()
            files = descriptor_pb2.FileDescriptorSet.FromString(schemas[topic].data)
            for file in files.file:
                pool.Add(file)
            classes[topic] = message_factory.GetMessageClass(pool.FindMessageTypeByName(schemas[topic].name))
        views: dict[str, list] = {"/foxglove/camera/image": [], "/foxglove/detections": []}
        for _, channel, message in reader.iter_messages(topics=list(views)):
            views[channel.topic].append(classes[channel.topic].FromString(message.data))
    frames = views["/foxglove/camera/image"]
    assert [(f.width, f.height, f.encoding, f.step) for f in frames] == [(64, 48, "rgb8", 192)] * 20
    assert [f.data for f in frames] == [image.data.tobytes() for image in sent]
    assert [f.timestamp.ToNanoseconds() for f in frames] == [image.header.stamp for image in sent]
    boxes = views["/foxglove/detections"]
    assert len(boxes) == 10 and all(b.texts[0].text == "mug 0.50" for b in boxes)
    assert [(p.x, p.y) for p in boxes[0].points[0].points] == [(1, 2), (3, 2), (3, 4), (1, 4)]


def test_a_recording_cut_short_is_readable_to_its_last_complete_chunk(tmp_path):
    path = tmp_path / "cut.mcap"
    recorder = McapRecorder(path, chunk_size=20_000)
    for i in range(30):
        recorder.write("/t", "percept/String", [b"header", np.full(4000, i, np.uint8)], 1000 + i, 1000 + i)
    recorder._file.flush()  # what a process killed now leaves behind: no summary, a torn last chunk
    data = path.read_bytes()
    (tmp_path / "torn.mcap").write_bytes(data[: len(data) - 100])
    items = list(read(tmp_path / "torn.mcap"))
    assert 0 < len(items) < 30
    assert [item.log_time_ns for item in items] == list(range(1000, 1000 + len(items)))
    assert bytes(items[-1].frames[1]) == bytes(np.full(4000, len(items) - 1, np.uint8))
    recorder.close()
    assert len(list(read(path))) == 30


def test_a_recorder_killed_with_sigkill_leaves_a_file_readable_to_its_last_chunk(
    tmp_path, registry, context, spawn
):
    """The real thing: `percept record` as a process, 640x480 frames (its 4 MiB chunks fill every few
    frames), then kill -9. What it wrote before the last complete chunk reads back intact, in order."""
    from conftest import spin_until, wait_for

    output = tmp_path / "killed.mcap"
    with Node("source", context=context) as node:
        images = node.create_publisher(Image, "/camera/image")
        # Uncompressed, so that the size on disk counts the chunks (frames of one value compress to nothing).
        recorder = spawn(
            "record", "/camera/image", "-o", str(output), "--no-foxglove", "--compression", "none"
        )
        spin_until(node, lambda: images.subscriber_count, timeout_s=20, what="the recorder")
        for i in range(32):  # 5 frames (4.6 MB) close a chunk: the last 2 stay in the open one
            frame = np.full((480, 640, 3), i, np.uint8)
            images.publish(Image(header=Header(stamp=time.time_ns(), frame_id="cam", seq=i), data=frame))
            node.spin_once(0.05)
        whole_chunks = 6 * 5 * frame.nbytes
        wait_for(lambda: output.stat().st_size >= whole_chunks, timeout_s=30, what="six chunks on disk")
        recorder.send_signal(signal.SIGKILL)
        recorder.wait(timeout=10)
    items = list(read(output))
    # Whole chunks only (6 of them, 30 frames, unless the recorder dropped some), the open one lost.
    assert len(items) >= 25 and len(items) % 5 == 0, len(items)
    seqs = []
    for item in items:
        image = decode([b"/camera/image", *item.frames], Image).msg
        assert np.all(image.data == image.header.seq)  # every byte of frame i is i: intact
        seqs.append(image.header.seq)
    assert seqs == sorted(seqs) and seqs[-1] < 31


def test_play_names_a_missing_file(tmp_path):
    from conftest import percept

    result = percept("play", str(tmp_path / "none.mcap"))
    assert result.returncode == 1 and "none.mcap: no such file" in result.stderr


def test_play_refuses_what_is_no_recording_and_names_the_topics_it_holds(tmp_path):
    from conftest import percept

    junk = tmp_path / "notes.mcap"
    junk.write_text("not a recording")
    result = percept("play", str(junk))
    assert result.returncode == 1 and result.stderr == (
        f"percept: error: recording {junk}: not an MCAP file (expected a file percept record wrote)\n"
    )
    foreign = tmp_path / "foreign.mcap"  # an MCAP file, of no percept messages
    McapRecorder(foreign).close()
    result = percept("play", str(foreign))
    assert result.returncode == 1 and "no percept messages in it; expected an MCAP file" in result.stderr
    recorder = McapRecorder(tmp_path / "one.mcap")
    recorder.write("/t", "percept/String", [b"header"], 1000, 1000)
    recorder.close()
    result = percept("play", str(tmp_path / "one.mcap"), "--topics", "/nope")
    assert result.returncode == 1 and "no topic /nope; it holds /t" in result.stderr


def test_record_names_a_folder_that_does_not_exist(tmp_path):
    from conftest import percept

    result = percept("record", "-o", str(tmp_path / "missing" / "run.mcap"), "--duration", "1")
    assert result.returncode == 1
    assert f"a folder it can be written to, found {tmp_path / 'missing'}: no such folder" in result.stderr


def test_record_says_when_nobody_publishes_a_named_topic_and_needs_a_graph(
    tmp_path, registry, context, monkeypatch
):
    from conftest import free_port, percept

    with Node("source", context=context) as node:
        node.create_publisher(Image, "/camera/image")
        result = percept("record", "/camera/imag", "-o", str(tmp_path / "typo.mcap"), "--duration", "1")
    assert result.returncode == 0, result.stderr
    assert (
        "nobody publishes /camera/imag yet; did you mean /camera/image?; recording it once one does"
        in result.stderr
    )
    monkeypatch.setenv("PERCEPT_REGISTRY", f"tcp://127.0.0.1:{free_port()}")
    alone = percept("record", "/camera/image", "-o", str(tmp_path / "alone.mcap"), "--duration", "1")
    assert alone.returncode == 1 and alone.stderr.startswith("percept: error: the registry at "), alone.stderr
    assert alone.stderr.count("\n") == 1 and not (tmp_path / "alone.mcap").exists()


def test_record_never_writes_over_a_recording_unless_told_to(tmp_path):
    """It replaced an existing file silently (ros2 bag record refuses an existing bag)."""
    from conftest import percept

    earlier = tmp_path / "run.mcap"
    earlier.write_bytes(b"an earlier recording")
    result = percept("record", "-o", str(earlier), "--duration", "1")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"recording {earlier}: the file exists; give --overwrite to replace it" in result.stderr
    assert earlier.read_bytes() == b"an earlier recording"
    result = percept("record", "-o", str(tmp_path), "--duration", "1")
    assert result.returncode == 1 and "expected a file to write, found a folder" in result.stderr
    assert "--overwrite" in percept("record", "--help").stdout


def test_record_stops_soon_after_ctrl_c_while_a_camera_keeps_publishing(tmp_path, registry, context, spawn):
    from conftest import read_until, spin_until

    spawn("-p", "rate:=50.0", node="SeqPublisher")
    output = tmp_path / "live.mcap"
    recorder = spawn("record", "-o", str(output))
    assert "recording /frames" in read_until(recorder, "recording /frames", timeout_s=30)
    seen: list[int] = []
    with Node("watcher", context=context) as node:  # the camera goes on: 50 more frames go by
        node.create_subscription(Image, "/frames", lambda m: seen.append(m.header.seq), QoS(depth=100))
        spin_until(node, lambda: len(seen) >= 50, what="50 frames")
    recorder.send_signal(signal.SIGINT)
    # It drains what is already on its way for at most a second; it used to wait for a quiet topic.
    out, _ = recorder.communicate(timeout=10)
    assert recorder.returncode == 0 and "wrote " in out, out
    assert len(list(read(output))) > 10


def test_bench_record_json_contract():
    import json

    from conftest import percept

    result = percept("bench", "record", "--rates", "20", "--seconds", "1", "--json", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    (row,) = json.loads(result.stdout.strip().splitlines()[-1])["results"]
    assert (
        row["rate"] == 20 and row["published"] == 48  # 20 pairs in 1 s, then 4 slow pairs that reveal drops
    )
    assert row["written"] + row["dropped"] == row["published"]  # nothing lost without being counted
    assert row["keeps_up"] and row["megabytes_per_s"] > 0 and row["raw_write_megabytes_per_s"] > 0
    assert "highest rate recorded with nothing lost: 20 Hz" in result.stdout


def _foreign_file(path, chunked: bool) -> None:
    """Our String messages stored out of time order (as a tool writing from several threads may), and
    a JSON channel of another tool beside them."""
    from mcap.writer import Writer

    from perception.recording.mcap_file import ENCODING, pack

    with open(path, "wb") as stream:
        writer = Writer(stream, chunk_size=200, use_chunking=chunked)
        writer.start(profile="", library="another tool")
        ours = writer.register_channel(
            "/t", ENCODING, writer.register_schema("percept/String", ENCODING, b"")
        )
        theirs = writer.register_channel("/their/status", "json", 0)
        for time_ns in (3, 1, 2, 6, 5, 4):
            writer.add_message(ours, time_ns, pack([b"header", bytes([time_ns])]), time_ns)
            writer.add_message(theirs, time_ns, b"{}", time_ns)
        writer.finish()


def test_a_foreign_file_plays_in_time_order_where_indexed_and_counts_what_is_not_ours(tmp_path):
    from collections import Counter

    indexed, plain = tmp_path / "indexed.mcap", tmp_path / "plain.mcap"
    _foreign_file(indexed, chunked=True)
    _foreign_file(plain, chunked=False)
    foreign: Counter[str] = Counter()
    assert [item.log_time_ns for item in read(indexed, foreign=foreign)] == [1, 2, 3, 4, 5, 6]
    assert foreign == {"/their/status": 6}
    assert [item.log_time_ns for item in read(plain)] == [3, 1, 2, 6, 5, 4]  # no index: as stored


def test_play_says_what_it_left_out_and_what_came_out_of_order(tmp_path, registry):
    from conftest import percept

    plain = tmp_path / "plain.mcap"
    _foreign_file(plain, chunked=False)
    result = percept("play", str(plain), "--wait", "0", "--rate", "1000")
    assert result.returncode == 0, result.stderr
    assert "played 6 messages" in result.stdout
    assert (
        "3 messages were stored before earlier ones and the file has no index to sort them by"
        in result.stderr
    )
    assert "left out 6 messages of channels not percept's: /their/status (6)" in result.stderr


def test_messages_reads_a_recording_back_as_subscribers_get_it(tmp_path):
    """Reading a recording in Python needed wire.decode by hand (from an audit): `messages` decodes."""
    from perception.errors import MalformedMessage
    from perception.msgs import String
    from perception.recording.mcap_file import messages
    from perception.runtime import wire

    path = tmp_path / "run.mcap"
    recorder = McapRecorder(path)
    for i in range(3):
        found = Detections(
            header=Header(stamp=i, seq=i),
            xyxy=[[1.0, 2.0, 3.0, 4.0]],
            scores=[0.5],
            class_ids=[0],
            class_names=["mug"],
        )
        frames = wire.encode(b"/detections", found, "src", i + 1)[1:]
        recorder.write("/detections", "percept/Detections", frames, 1000 + i, 1000 + i)
    recorder.write("/other", "percept/String", wire.encode(b"/other", String(data="x"))[1:], 2000, 2000)
    recorder.write("/broken", "percept/String", [b"\xc1not msgpack"], 3000, 3000)
    recorder.close()
    read_back = list(messages(path, ["/detections"]))
    assert [m.log_time_ns for m in read_back] == [1000, 1001, 1002]
    assert all(type(m.msg) is Detections and m.msg.class_names == ["mug"] for m in read_back)
    assert read_back[2].msg.header.seq == 2 and read_back[2].msg.xyxy.tolist() == [[1.0, 2.0, 3.0, 4.0]]
    with pytest.raises(
        MalformedMessage, match=r"run.mcap: /broken at log time 3000: header is not valid msgpack"
    ):
        list(messages(path))
