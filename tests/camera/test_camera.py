"""The camera node and its parts on a video file written here: frames, calibration, reconnection."""

from __future__ import annotations

import contextlib
import itertools
from pathlib import Path

import numpy as np
import pytest

from perception.camera import Calibration, FrameSource, load_calibration
from perception.camera.calibration import CalibrationError

CALIBRATION = """\
image_width: 160
image_height: 120
camera_name: test
camera_matrix: {rows: 3, cols: 3, data: [150.0, 0, 80.5, 0, 151.0, 60.5, 0, 0, 1]}
distortion_model: plumb_bob
distortion_coefficients: {rows: 1, cols: 5, data: [-0.1, 0.01, 0, 0, 0]}
"""


def write_video(path, frames: int = 20, size=(160, 120)) -> str:
    """An MJPG .avi whose frame i is a flat grey of level 10 * i, cycling every 25 frames (survives JPEG
    well enough to tell apart)."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20, size)
    assert writer.isOpened(), "OpenCV cannot write MJPG here"
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), 10 * (i % 25), np.uint8))
    writer.release()
    return str(path)


def test_a_video_file_is_read_in_order_and_looped(tmp_path):
    source = FrameSource(write_video(tmp_path / "clip.avi", frames=5), loop=True)
    levels = [round(source.read(now=0.0).mean() / 10) for _ in range(8)]  # read ahead of its pace
    assert levels == [0, 1, 2, 3, 4, 0, 1, 2]
    assert source.status.connected and source.status.frames == 8 and source.status.failures == 0
    assert source.status.skipped == 0 and not source.status.ended


def test_a_video_file_keeps_its_own_pace_and_ends_without_loop(tmp_path):
    source = FrameSource(write_video(tmp_path / "clip.avi", frames=10))  # 20 frames/s
    assert source.due_in(0.0) == 0.0
    assert round(source.read(now=10.0).mean() / 10) == 0
    assert source.due_in(10.0) == pytest.approx(0.05) and source.due_in(10.06) == 0.0
    frame = source.read(now=10.22)  # frame 4 is due: 1, 2 and 3 are passed over, as a camera's would be
    assert round(frame.mean() / 10) == 4 and source.status.skipped == 3
    assert source.read(now=10.5) is None  # frames 5-9 were due by now, and then the file ends
    assert source.status.ended and source.status.last_error == f"source {source.spec!r} ended after 10 frames"
    assert source.read(now=20.0) is None and source.status.failures == 0  # no retrying a file that ended
    assert source.status.frames == 2 and source.status.skipped == 8


def test_a_source_that_goes_away_is_retried_with_backoff_and_comes_back(tmp_path):
    path = tmp_path / "clip.avi"
    source = FrameSource(write_video(path, frames=2), loop=True, min_backoff_s=1.0, max_backoff_s=4.0)
    assert source.read(now=0.0) is not None and source.read(now=0.0) is not None
    path.unlink()  # gone while it plays (a recording moved away, a device unplugged)
    assert source.read(now=0.0) is None and source.status.failures == 1
    assert "did not open" in source.status.last_error and not source.status.connected
    assert source.read(now=0.5) is None and source.status.failures == 1  # waiting: no retry yet
    assert source.read(now=1.0) is None and source.status.failures == 2  # retried, failed: next in 2 s
    write_video(path)
    assert source.read(now=2.9) is None  # still waiting
    assert source.read(now=3.0) is not None and source.status.connected


def test_the_camera_node_says_what_it_was_not_given_and_stops_on_intrinsics_it_cannot_fit(tmp_path, registry):
    from conftest import percept

    video = write_video(tmp_path / "clip.avi", frames=40)  # 160 x 120, 4:3
    wide = tmp_path / "wide.yaml"
    wide.write_text(CALIBRATION.replace("image_width: 160", "image_width: 320"))  # 320 x 120: 8:3
    result = percept(
        "run", "camera", "-p", f"source:={video}", "-p", f"calibration:={wide}", "-p", "width:=100",
        "-p", "height:=100", "-p", "wait_for_subscriber:=0", timeout=60,
    )  # fmt: skip
    output = result.stderr
    assert result.returncode == 1, output
    assert "asked for 100x100, the source delivers 160x120" in output
    assert f"calibration {wide} is for 320x120, the source delivers 160x120, another aspect ratio" in output
    assert "intrinsics scaled" not in output  # they were not: the refusal alone is said


def test_a_stream_that_never_answers_keeps_no_one_waiting(tmp_path):
    """A server that takes the connection and says nothing: FFmpeg waited 30 s by default, holding the
    node's thread (no stats, deaf to Ctrl-C). The open runs aside and gives up after 5 s."""
    import socket
    import time

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    source = FrameSource(f"http://127.0.0.1:{server.getsockname()[1]}/stream.mjpg")
    try:
        started = time.monotonic()
        while source.status.failures == 0 and time.monotonic() - started < 20:
            began = time.monotonic()
            assert source.read() is None
            assert time.monotonic() - began < 0.5  # the caller is never held
            time.sleep(0.05)
        assert 4 < time.monotonic() - started < 12
        assert source.status.last_error.endswith("did not open (refused, or no answer within 5 s)")
    finally:
        source.close()
        server.close()


class MjpegCamera:
    """An IP camera serving MJPEG over HTTP at `fps`, whatever its client reads: frame i shows i in 16
    black or white bands, and `sent` is the index of the last frame it sent."""

    def __init__(self, fps: float) -> None:
        import http.server
        import socketserver
        import threading
        import time

        import cv2

        camera = self
        self.sent = -1

        def jpeg(index: int) -> bytes:
            bands = np.array([255 if index >> bit & 1 else 0 for bit in range(16)], np.uint8)
            return cv2.imencode(".jpg", np.repeat(np.repeat(bands, 20)[None, :, None], 240, 0).repeat(3, 2))[
                1
            ].tobytes()

        class Stream(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                started = time.monotonic()
                with contextlib.suppress(OSError):
                    for index in itertools.count():
                        time.sleep(max(0.0, started + index / fps - time.monotonic()))
                        image = jpeg(index)
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(image)
                        )
                        self.wfile.write(image + b"\r\n")
                        camera.sent = index

            def log_message(self, *args: object) -> None:
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Stream)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stream.mjpg"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def index(frame: np.ndarray) -> int:
        return sum(1 << bit for bit in range(16) if frame[120, 20 * bit + 10, 0] > 127)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_live_source_read_slower_than_it_delivers_gives_its_latest_frame():
    """A 30 fps stream read 5 times a second: OpenCV hands out every frame in order, so each was older
    than the last (0.4 s behind after a second, 9.7 s after twelve). The source is read as it delivers,
    and the frames passed over are counted."""
    import time

    camera = MjpegCamera(fps=30.0)
    source = FrameSource(camera.url)
    behind = []
    try:
        started = time.monotonic()
        while len(behind) < 15 and time.monotonic() - started < 30:
            frame = source.read()
            if frame is not None:
                behind.append(camera.sent - camera.index(frame))
                assert abs(source.stamp_ns - time.time_ns()) < 1e9
            time.sleep(0.2)
    finally:
        source.close()
        camera.close()
    assert len(behind) == 15, source.status
    assert max(behind[5:]) <= 10, behind  # a third of a second at most (it was 0.4 s more each second)
    assert source.status.skipped > 15 * 3, source.status


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("typo.avi", "source '{path}': no such file"),
        ("garbage.avi", "source '{path}': expected a video or image file OpenCV can read, found 5,000 bytes"),
        ("shots", "source '{path}': expected a video file, found a folder; give its images as a numbered "
         "sequence such as {path}/frame_%03d.png"),
        ("nowhere/frame_%04d.png", "source '{path}': an image sequence in a folder that does not exist"),
        ("shots/img_%03d.png", "source '{path}': no image in {tmp}/shots matches img_%03d.png"),
        ("depth/d_%03d.png", "source '{path}': expected 8-bit images, found uint16 (d_000.png), which OpenCV's "
         "sequence reader would turn into 8-bit colour"),
    ],
)  # fmt: skip
def test_a_file_source_that_can_never_be_read_is_refused_at_once(tmp_path, name, message):
    """Retrying is for devices and streams, which come back; a mistyped path or a file that is not a
    video never will, and a node retrying it forever looks like one waiting for a camera."""
    import cv2

    (tmp_path / "garbage.avi").write_bytes(bytes(range(250)) * 20)
    (tmp_path / "shots").mkdir()
    cv2.imwrite(str(tmp_path / "shots" / "frame_007.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "depth").mkdir()
    cv2.imwrite(str(tmp_path / "depth" / "d_000.png"), np.full((8, 8), 800, np.uint16))  # millimetres
    path = str(tmp_path / name)
    with pytest.raises(ValueError) as error:
        FrameSource(path)
    assert str(error.value).startswith(message.format(path=path, tmp=tmp_path)), str(error.value)
    if name == "shots":  # the pattern the error names is one that opens
        FrameSource(str(tmp_path / "shots" / "frame_%03d.png")).close()


def test_a_video_cut_short_says_so_at_its_end(tmp_path):
    path = tmp_path / "clip.avi"
    data = Path(write_video(path, frames=40)).read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the header still says 40
    source = FrameSource(str(path))
    while source.read(now=0.0) is not None:
        pass
    assert source.status.ended and source.status.cut_short
    assert " of the 40 its header gives: cut short or unreadable from there" in source.status.last_error


def test_calibration_files_in_the_ros_format(tmp_path):
    good = tmp_path / "cam.yaml"
    good.write_text(CALIBRATION)
    calibration = load_calibration(good)
    assert (calibration.width, calibration.height, calibration.name) == (160, 120, "test")
    np.testing.assert_allclose(calibration.K, [[150, 0, 80.5], [0, 151, 60.5], [0, 0, 1]])
    np.testing.assert_allclose(calibration.D, [-0.1, 0.01, 0, 0, 0])
    half = calibration.scaled(80, 60)
    np.testing.assert_allclose(half.K[:2], [[75, 0, 40.25], [0, 75.5, 30.25]])
    nominal = Calibration.nominal(640, 480)
    assert nominal.K[0, 0] == pytest.approx(320 / np.tan(np.radians(30)))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            CALIBRATION.replace("image_width: 160", "image_width: wide"),
            "image_width: expected a positive integer, found 'wide'",
        ),
        (
            CALIBRATION.replace("data: [150.0, 0, 80.5, 0, 151.0, 60.5, 0, 0, 1]", "data: [150.0, 0, 80.5]"),
            "camera_matrix: expected 3 x 3 values, found 3",
        ),
        (
            CALIBRATION.replace("plumb_bob", "fisheye9"),
            "distortion_model: expected one of plumb_bob, rational_polynomial, equidistant, found 'fisheye9'",
        ),
        ("- just\n- a list\n", "expected a mapping of keys"),
        ("camera_matrix: [unclosed", "not valid YAML at line 1: expected ',' or ']', but got '<stream end>'"),
        (
            CALIBRATION.replace("data: [-0.1, 0.01, 0, 0, 0]", "data: [-0.1, 0.01, 0]").replace(
                "cols: 5", "cols: 3"
            ),
            "distortion_coefficients: expected 4 or 5 values for plumb_bob, found 3",
        ),
        (
            CALIBRATION.replace("-0.1, 0.01", ".nan, 0.01"),
            "distortion_coefficients: expected finite numbers, found [nan, 0.01, 0.0, 0.0, 0.0]",
        ),
        (
            "cam0:\n  intrinsics: [1, 1, 1, 1]\ncam1:\n  intrinsics: [1, 1, 1, 1]\n",
            "a Kalibr camchain of 2 cameras",
        ),
    ],
)
def test_bad_calibration_files_name_the_key(tmp_path, text, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(CalibrationError, match=r"bad\.yaml") as error:
        load_calibration(bad)
    assert message in str(error.value)
    with pytest.raises(CalibrationError, match="cannot read it"):
        load_calibration(tmp_path / "missing.yaml")


def test_calibrations_from_opencv_and_kalibr_and_no_scaling_across_aspect_ratios(tmp_path):
    import cv2

    K = np.array([[150.0, 0, 80.5], [0, 151.0, 60.5], [0, 0, 1]])
    opencv = tmp_path / "opencv.yaml"  # as OpenCV's calibration sample writes it
    storage = cv2.FileStorage(str(opencv), cv2.FILE_STORAGE_WRITE)
    storage.write("image_width", 160)
    storage.write("image_height", 120)
    storage.write("camera_matrix", K)
    storage.write("distortion_coefficients", np.array([[-0.1, 0.01, 0, 0, 0]]))
    storage.release()
    kalibr = tmp_path / "camchain.yaml"
    kalibr.write_text(
        "cam0:\n  camera_model: pinhole\n  intrinsics: [150.0, 151.0, 80.5, 60.5]\n"
        "  distortion_model: radtan\n  distortion_coeffs: [-0.1, 0.01, 0, 0]\n  resolution: [160, 120]\n"
    )
    for path in (opencv, kalibr):
        calibration = load_calibration(path)
        assert (calibration.width, calibration.height, calibration.distortion_model) == (
            160,
            120,
            "plumb_bob",
        )
        np.testing.assert_allclose(calibration.K, K)
        np.testing.assert_allclose(calibration.D[:4], [-0.1, 0.01, 0, 0])
    with pytest.raises(
        CalibrationError, match=r"camchain.yaml is for 160x120, the source delivers 160x90, another aspect"
    ):
        load_calibration(kalibr).scaled(160, 90)


def test_the_camera_node_publishes_frames_and_survives_its_source_going_away(
    tmp_path, registry, context, spawn
):
    from conftest import spin_until

    from perception import Node
    from perception.msgs import CameraInfo, CameraStats, Image

    video = tmp_path / "clip.avi"
    write_video(video, frames=40)
    calibration = tmp_path / "cam.yaml"
    calibration.write_text(CALIBRATION)
    spawn(
        "run",
        "perception.nodes.camera:CameraNode",
        "-p",
        f"source:={video}",
        "-p",
        "loop:=true",
        "-p",
        "rate:=20",
        "-p",
        f"calibration:={calibration}",
        "-p",
        "position:=[0.5, 0.0, 1.0]",
    )
    images: list[Image] = []
    infos: list[CameraInfo] = []
    stats: list[CameraStats] = []
    with Node("viewer", context=context) as node:
        node.create_subscription(Image, "/camera/image", images.append)
        node.create_subscription(CameraInfo, "/camera/camera_info", infos.append)
        node.create_subscription(CameraStats, "/camera/stats", stats.append)
        # Each topic joins its publisher on its own, so the first image and the first info may be of
        # different frames: a frame both came for shows that they are stamped alike.
        spin_until(
            node,
            lambda: len(images) >= 5 and {i.header.stamp for i in infos} & {i.header.stamp for i in images},
            timeout_s=20,
            what="camera frames",
        )
        assert images[0].data.shape == (120, 160, 3) and images[0].encoding == "rgb8"
        assert infos[0].pose.position == (0.5, 0.0, 1.0)
        np.testing.assert_allclose(infos[0].K[0], [150, 0, 80.5])
        # The file disappears: the node keeps running and says so; it comes back: frames resume.
        video.rename(tmp_path / "gone.avi")
        spin_until(
            node, lambda: stats and not stats[-1].connected, timeout_s=30, what="a disconnected camera"
        )
        assert "gave no frame" in stats[-1].last_error or "did not open" in stats[-1].last_error
        (tmp_path / "gone.avi").rename(video)
        before = len(images)
        spin_until(
            node, lambda: len(images) > before + 3, timeout_s=30, what="frames after the source returned"
        )
        spin_until(
            node,
            lambda: stats[-1].connected and stats[-1].reconnects >= 1,
            timeout_s=10,
            what="reconnected stats",
        )


def test_a_video_file_plays_at_its_own_rate_and_the_camera_node_finishes_at_its_end(
    tmp_path, registry, context, spawn
):
    from conftest import spin_until, wait_for

    from perception import Node
    from perception.msgs import Image

    video = write_video(tmp_path / "clip.avi", frames=40)  # 2 s at 20 frames/s
    stamps: list[int] = []
    with Node("viewer", context=context) as node:
        node.create_subscription(Image, "/camera/image", lambda msg: stamps.append(msg.header.stamp))
        camera = spawn(
            "run", "perception.nodes.camera:CameraNode", "-p", f"source:={video}", "-p", "rate:=1000"
        )
        spin_until(node, lambda: camera.poll() is not None, timeout_s=60, what="the camera to finish")
    output = camera.stdout.read() if camera.stdout else ""
    assert camera.returncode == 0, output
    assert f"source '{video}' ended after 40 frames; the camera stops (loop:=true plays it again)" in output
    # Frames come 50 ms apart, as recorded, not as fast as rate:=1000 allows (a busy machine can only
    # make the gaps longer, or skip frames, which makes them longer still).
    wait_for(lambda: len(stamps) >= 10, timeout_s=1, what="most of the clip's frames")
    assert (stamps[-1] - stamps[0]) / 1e9 >= 0.9 * (len(stamps) - 1) / 20, stamps


def test_the_camera_launch_file_takes_the_camera_parameters_the_readme_names(tmp_path, registry):
    from conftest import percept, status_rates

    video = write_video(tmp_path / "clip.avi", frames=40)
    calibration = tmp_path / "cam.yaml"
    calibration.write_text(CALIBRATION)
    result = percept(
        "launch",
        "launch/camera_detect.yaml",
        f"source:={video}",
        "loop:=true",
        "rate:=10",
        f"calibration:={calibration}",
        "undistort:=true",
        "width:=160",
        "height:=120",
        "position:=[0.5, 0.0, 1.0]",
        "orientation:=[0.0, 0.0, 0.0, 1.0]",
        "--duration",
        "8",
        "--status-period",
        "4",
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "matches no declared parameter" not in output, output
    rates = status_rates(result.stdout, "/detector", "/detections")
    assert rates and max(rates) > 5.0, result.stdout


def test_a_fisheye_calibration_is_undistorted_with_the_fisheye_model():
    import cv2

    from perception.nodes.camera import CameraNode

    K = np.array([[80.0, 0, 80], [0, 80.0, 60], [0, 0, 1]])
    D = np.array([0.2, 0.05, 0.0, 0.0])
    fisheye = Calibration(160, 120, K, D, "equidistant", "fisheye")
    frame = np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8)
    camera = CameraNode.__new__(CameraNode)  # the undistortion alone, without a source
    camera._maps = None
    undistorted = camera._undistorted(frame, fisheye)
    expected = cv2.fisheye.undistortImage(frame, K, D, Knew=K)
    assert np.abs(undistorted.astype(int) - expected.astype(int)).mean() < 2.0
    plumb_bob = cv2.undistort(frame, K, np.r_[D, 0.0])
    assert np.abs(undistorted.astype(int) - plumb_bob.astype(int)).mean() > 5.0


def test_a_gstreamer_pipeline_without_gstreamer_fails_at_once_in_one_line(monkeypatch):
    from conftest import percept

    from perception.camera import source

    pipeline = "videotestsrc ! videoconvert ! appsink"
    monkeypatch.setattr(source, "video_backends", lambda: {"FFMPEG": True, "GStreamer": False})
    with pytest.raises(
        ValueError, match=r"is a GStreamer pipeline, but this OpenCV .* was built without GStreamer"
    ):
        FrameSource(pipeline)
    monkeypatch.setattr(source, "video_backends", lambda: {"FFMPEG": True, "GStreamer": True})
    FrameSource(pipeline).close()  # with GStreamer it is tried (and retried) as any source
    monkeypatch.undo()
    assert not source.video_backends()["GStreamer"]  # the pip OpenCV this project installs has none
    node = percept("run", "perception.nodes.camera:CameraNode", "-p", f"source:={pipeline}", timeout=60)
    assert node.returncode == 1
    assert (
        node.stderr.strip()
        .splitlines()[-1]
        .startswith(f"percept: error: CameraNode did not start: source '{pipeline}' is a GStreamer pipeline")
    )


def test_video_backends_are_read_from_the_build_information():
    from perception.camera.source import video_backends

    backends = video_backends()
    assert (
        "FFMPEG" in backends
        and "GStreamer" in backends
        and all(isinstance(v, bool) for v in backends.values())
    )
