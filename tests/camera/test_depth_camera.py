"""The depth camera without hardware: a recording made by librealsense itself (its software device,
recorded by its recorder) plays through the same pipeline and depth-to-colour alignment a device
feeds; the node publishes it on the simulator's topics. With no device, one line says what was found."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import read_until, spin_until

rs = pytest.importorskip("pyrealsense2", exc_type=ImportError)  # also needs the system's libusb-1.0

from perception import Node, QoS  # noqa: E402
from perception.camera.depth import DepthCameraError, RealSense  # noqa: E402
from perception.msgs import CameraInfo, Image  # noqa: E402

W, H, FPS, FX = 64, 48, 30, 50.0
FRAMES = 12


def depth_mm(n: int) -> np.ndarray:
    """A floor tilting away: 600 mm at the bottom row to 900 at the top, plus 10 mm a frame."""
    rows = np.linspace(900, 600, H)[:, None] + 10 * n
    return np.repeat(rows, W, axis=1).astype(np.uint16)


def colour(n: int) -> np.ndarray:
    image = np.zeros((H, W, 3), np.uint8)
    image[..., 0] = 20 * n
    image[:, : W // 2, 2] = 200
    return image


def record_with_the_sdk(path) -> None:
    """What a RealSense would have recorded: z16 depth in millimetres and rgb8 colour, 30 Hz."""
    device = rs.software_device()
    device.register_info(rs.camera_info.name, "percept software camera")
    device.register_info(rs.camera_info.serial_number, "000000000001")
    depth_sensor, color_sensor = device.add_sensor("Depth"), device.add_sensor("Color")
    intrinsics = rs.intrinsics()
    intrinsics.width, intrinsics.height, intrinsics.ppx, intrinsics.ppy = W, H, W / 2, H / 2
    intrinsics.fx = intrinsics.fy = FX
    intrinsics.model, intrinsics.coeffs = rs.distortion.brown_conrady, [0.0] * 5
    profiles = []
    for sensor, kind, uid, bpp, fmt in (
        (depth_sensor, rs.stream.depth, 0, 2, rs.format.z16),
        (color_sensor, rs.stream.color, 1, 3, rs.format.rgb8),
    ):
        stream = rs.video_stream()
        stream.type, stream.index, stream.uid = kind, 0, uid
        stream.width, stream.height, stream.fps, stream.bpp, stream.fmt = W, H, FPS, bpp, fmt
        stream.intrinsics = intrinsics
        profiles.append(sensor.add_video_stream(stream))
    depth_sensor.add_read_only_option(rs.option.depth_units, 0.001)
    same_place = rs.extrinsics()
    same_place.rotation, same_place.translation = [1, 0, 0, 0, 1, 0, 0, 0, 1], [0, 0, 0]
    profiles[0].register_extrinsics_to(profiles[1], same_place)
    recorder = rs.recorder(str(path), device)
    queue = rs.frame_queue(100)
    for sensor, profile in zip((depth_sensor, color_sensor), profiles, strict=True):
        sensor.open(profile)
        sensor.start(queue)
    for n in range(FRAMES):
        for sensor, profile, pixels in (
            (depth_sensor, profiles[0], depth_mm(n)),
            (color_sensor, profiles[1], colour(n)),
        ):
            frame = rs.software_video_frame()
            frame.pixels, frame.bpp = pixels.tobytes(), pixels.itemsize * (3 if pixels.ndim == 3 else 1)
            frame.stride = W * frame.bpp
            frame.timestamp, frame.domain, frame.frame_number = (
                n * 1000 / FPS,
                rs.timestamp_domain.hardware_clock,
                n,
            )
            frame.profile = profile.as_video_stream_profile()
            sensor.on_video_frame(frame)
        time.sleep(1 / FPS)
    for sensor in (depth_sensor, color_sensor):
        sensor.stop()
        sensor.close()
    del recorder  # the file is complete when the recorder goes


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    path = tmp_path_factory.mktemp("realsense") / "camera.db3"  # this SDK records rosbag2 (sqlite3)
    record_with_the_sdk(path)
    return path


def test_a_recording_reads_as_colour_with_depth_in_metres_aligned_to_it(recording):
    source = RealSense(playback=str(recording))
    source.open()
    try:
        frames = [f for f in iter(lambda: source.read(2.0), None)]
    finally:
        source.close()
    # The SDK's syncer pairs depth and colour by time and may drop the first or last few: most come.
    assert len(frames) >= FRAMES // 2, len(frames)
    first = frames[0]
    assert first.rgb.shape == (H, W, 3) and first.depth_m.dtype == np.float32
    np.testing.assert_allclose(first.K, [[FX, 0, W / 2], [0, FX, H / 2], [0, 0, 1]])
    n = round(float(first.rgb[0, 0, 0]) / 20)  # which recorded frame this is
    inner = first.depth_m[8:-8, 8:-8]  # aligned: the edges may lose a pixel to reprojection
    expected = depth_mm(n)[8:-8, 8:-8] / 1000
    assert np.nanmean(np.abs(inner - expected)) < 0.01, (np.nanmean(inner), expected.mean())
    np.testing.assert_array_equal(first.rgb[:, : W // 2, 2], 200)


def test_the_node_publishes_the_simulators_topics_and_stops_at_the_recordings_end(
    registry, context, spawn, recording
):
    images, depths, infos = [], [], []
    with Node("depth_listener", context=context) as node:
        node.create_subscription(Image, "/camera/image", images.append)
        node.create_subscription(Image, "/camera/depth", depths.append)
        node.create_subscription(CameraInfo, "/camera/camera_info", infos.append)
        camera = spawn("run", "perception.nodes.depth_camera:DepthCameraNode", "-p", f"playback:={recording}")
        spin_until(node, lambda: camera.poll() is not None, timeout_s=60, what="the end of the recording")
        node.spin(0.3)
    output = read_until(camera, "ended", 1)
    assert camera.returncode == 0, output
    assert depths and images and infos, output
    assert depths[0].encoding == "32FC1" and images[0].encoding == "rgb8"
    assert depths[0].header.stamp == images[0].header.stamp == infos[0].header.stamp
    assert 0.55 < float(np.nanmedian(depths[0].data)) < 0.95
    assert infos[0].fx == pytest.approx(FX)


def test_a_looped_recording_plays_again_with_stamps_going_on(registry, context, spawn, recording):
    depths: list[Image] = []
    with Node("depth_listener", context=context) as node:
        node.create_subscription(Image, "/camera/depth", depths.append, QoS(depth=100))
        camera = spawn(
            "run",
            "perception.nodes.depth_camera:DepthCameraNode",
            "-p",
            f"playback:={recording}",
            "-p",
            "loop:=true",
        )
        spin_until(
            node, lambda: len(depths) > 2 * FRAMES, timeout_s=60, what="a second pass of the recording"
        )
    assert camera.poll() is None  # still playing
    stamps = [d.header.stamp for d in depths]
    assert stamps == sorted(stamps)


def test_with_no_device_one_line_says_what_was_found_and_the_node_waits_for_one(registry, context, spawn):
    """As realsense2_camera waits for its device, and the colour camera node for an unplugged one: a
    respawning launch must not turn a camera plugged in late into a crash loop."""
    import signal

    from perception.msgs import CameraStats

    if len(rs.context().query_devices()):
        pytest.skip("a RealSense is connected here")  # the line would name it
    with pytest.raises(DepthCameraError, match=r"RealSense: expected a RealSense connected, found: none"):
        RealSense().open()
    camera = spawn("run", "perception.nodes.depth_camera:DepthCameraNode")
    stats: list[CameraStats] = []
    with Node("stats_listener", context=context) as node:
        node.create_subscription(CameraStats, "/depth_camera/stats", stats.append)
        spin_until(node, lambda: stats, timeout_s=30, what="the depth camera's stats")
    assert camera.poll() is None and not stats[-1].connected and stats[-1].failures >= 1
    assert stats[-1].last_error == "RealSense: expected a RealSense connected, found: none"
    camera.send_signal(signal.SIGINT)
    output = read_until(camera, "looking again", 5)
    assert camera.wait(timeout=30) == 0, output
    assert "RealSense: expected a RealSense connected, found: none; looking again with backoff" in output
    assert "Traceback" not in output
