"""The live viewer: overlay drawing on arrays, the choice of frame for a stream, the served API and
MJPEG stream, and the page in a real headless browser (Debian's chromium driven by selenium)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import urllib.request

import cv2
import numpy as np
import pytest

from perception import msgs
from perception.display import overlay
from perception.display.palette import PUSH
from perception.viewer.state import ViewerState


def header(stamp: int) -> msgs.Header:
    return msgs.Header(stamp=stamp, frame_id="camera")


def grey(stamp: int) -> msgs.Image:
    return msgs.Image(header(stamp), np.full((120, 160, 3), 90, np.uint8), encoding="rgb8")


def mug(stamp: int) -> msgs.Detections:
    return msgs.Detections(
        header(stamp), xyxy=[[40, 30, 120, 90]], scores=[0.9], class_ids=[2], class_names=["mug"]
    )


def test_depth_is_shown_near_warm_far_cold_and_invalid_black():
    depth = np.tile(np.linspace(0.5, 5.0, 64, dtype=np.float32), (8, 1))
    depth[:, :4] = np.nan
    shown = overlay.displayable(msgs.Image(header(0), depth, encoding="32FC1"))
    assert shown.shape == (8, 64, 3) and shown.dtype == np.uint8
    assert (shown[:, :4] == 0).all()
    near, far = shown[4, 8].astype(int), shown[4, 60].astype(int)
    assert near[2] > near[0] and far[0] > far[2]  # BGR: red near, blue far


def test_a_detection_is_outlined_in_its_class_colour_and_labelled():
    canvas = overlay.displayable(grey(0))
    overlay.draw_detections(canvas, mug(0))
    assert tuple(canvas[60, 40]) == overlay.colour(2)  # left edge of the box
    assert tuple(canvas[60, 80]) == (90, 90, 90)  # inside is untouched
    assert (canvas[10:30, 40:100] != 90).any()  # the label above the box


def test_a_grasp_is_drawn_where_the_camera_sees_it():
    # A camera 1 m above the origin looking straight down (optical z = world -z).
    down = (1.0, 0.0, 0.0, 0.0)  # 180 degrees about x
    K = np.array([[100.0, 0, 80], [0, 100, 60], [0, 0, 1]])
    info = msgs.CameraInfo(header(0), 160, 120, K, pose=msgs.Pose((0, 0, 1), down))
    assert np.allclose(overlay.project(np.array([[0.1, 0.0, 0.0]]), info), [[90, 60]])
    grasps = msgs.Grasps(header(0), [[0.1, 0, 0]], [[0, 0, 0, 1.0]], [0.2], [0.9], [0], ["cube"])
    canvas = np.zeros((120, 160, 3), np.uint8)
    overlay.draw_grasps(canvas, grasps, info)
    # The hand's y axis closes: world y maps to image -y here, so the line runs vertically at u = 90.
    assert tuple(canvas[60, 90]) == (255, 255, 255)
    assert tuple(canvas[50, 90]) == overlay.GRASP_BEST and tuple(canvas[60, 110]) == (0, 0, 0)
    # A push from (-0.3, 0.3) to (-0.1, 0.3) in the world: image u 50 to 70 on row v = 30.
    pushes = msgs.Grasps(
        header(0),
        push_starts=[[-0.3, 0.3, 0.0]],
        push_ends=[[-0.1, 0.3, 0.0]],
        push_qualities=[0.5],
        push_detection_indices=[0],
        push_class_names=["cube"],
    )
    overlay.draw_grasps(canvas, pushes, info)
    assert tuple(canvas[30, 58]) == PUSH and tuple(canvas[40, 58]) == (0, 0, 0)


def test_a_stream_shows_the_newest_frame_its_detections_answered():
    state = ViewerState()
    for stamp in (1, 2, 3):
        state.add("/camera/image", grey(stamp))
    state.add("/detections", mug(2))  # the detector is one frame behind
    frame = state.frame("/camera/image")
    assert frame is not None
    shown = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert np.abs(shown[60, 40].astype(int) - overlay.colour(2)).max() < 40
    assert frame.key[0] == (2, 0)  # stamp 2, not the newest (3)
    assert state.frame("/camera/image") is frame  # nothing new: drawn once, shared
    plain = state.frame("/camera/image", with_overlays=False)
    assert plain is not None and plain.key == ((3, 0),)
    assert state.frame("/nothing") is None
    other = msgs.Detections(
        msgs.Header(stamp=3, frame_id="other_camera"),
        xyxy=[[0, 0, 9, 9]],
        scores=[1.0],
        class_ids=[2],
        class_names=["mug"],
    )
    state.add("/other/detections", other)  # another camera's boxes: never drawn here, never waited for
    frame = state.frame("/camera/image")
    assert frame is not None and frame.key == ((2, 0), ("/detections", (2, 0)))


def test_tracks_keep_trails_while_they_live():
    state = ViewerState()
    for step in range(3):
        state.add(
            "/tracks",
            msgs.Tracks(
                header(step),
                ids=[5],
                class_ids=[2],
                class_names=["mug"],
                xyxy=[[10 * step, 0, 10 * step + 10, 20]],
                scores=[1.0],
                velocities=[[0, 0]],
                ages_s=[1.0],
                ground_positions=[[np.nan] * 3],
                distances=[np.nan],
                speeds=[np.nan],
                times_to_collision=[np.inf],
            ),
        )
    assert list(state.trails["/tracks"][5]) == [(5.0, 20.0), (15.0, 20.0), (25.0, 20.0)]
    state.add("/tracks", msgs.Tracks(header(4)))
    assert state.trails["/tracks"] == {}


def start_viewer(spawn, *args: str) -> tuple[object, str]:
    viewer = spawn("view", "--port", "0", *args)
    line = viewer.stdout.readline()
    assert "viewer at http://" in line, line
    return viewer, line.split()[2].rstrip("/")


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def graph_of(base: str) -> dict:
    return json.loads(get(base + "/api/graph"))


def test_the_viewer_serves_the_graph_rates_and_an_mjpeg_stream(registry, spawn):
    from conftest import wait_for

    spawn(node="ViewerScene")
    _, base = start_viewer(spawn)
    wait_for(lambda: graph_of(base)["streams"] == ["/camera/image"], 20, "the image stream")
    wait_for(
        lambda: {t["topic"]: t["rate_hz"] for t in graph_of(base)["topics"]}.get("/detections", 0) > 5,
        10,
        "a rate for /detections",
    )
    graph = graph_of(base)
    topics = {t["topic"]: t for t in graph["topics"]}
    assert topics["/camera/image"]["type"] == "percept/Image"
    assert topics["/camera/image"]["publishers"] == ["/viewer_scene"]
    assert 7 < topics["/camera/image"]["rate_hz"] < 13  # published at 10 Hz
    assert [n["name"] for n in graph["nodes"]] == ["/viewer_scene"]  # the viewer hides itself
    with urllib.request.urlopen(base + "/stream?topic=/camera/image&fps=20", timeout=10) as stream:
        assert stream.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        frames = []
        while len(frames) < 3:
            line = stream.readline()
            if line.lower().startswith(b"content-length:"):
                stream.readline()  # the blank line before the JPEG
                frames.append(stream.read(int(line.split(b":")[1])))
    pictures = [cv2.imdecode(np.frombuffer(f, np.uint8), cv2.IMREAD_COLOR) for f in frames]
    assert all(p.shape == (120, 160, 3) for p in pictures)
    assert len({p[95:115].tobytes() for p in pictures}) == 3  # the square moved: three new frames
    for fps in ("nan", "0", "fast"):
        with pytest.raises(urllib.error.HTTPError) as bad:
            get(base + f"/stream?topic=/camera/image&fps={fps}")
        assert bad.value.code == 400 and b"fps" in bad.value.read()
    with pytest.raises(urllib.error.HTTPError) as missing:
        get(base + "/snapshot?topic=/nope")
    assert missing.value.code == 404 and b"/camera/image" in missing.value.read()


def browser():
    """Headless Debian chromium through selenium, or a skip where it is not installed (CI installs it
    and sets PERCEPT_REQUIRE_BROWSER, so there the test can only pass or fail)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        if os.environ.get("PERCEPT_REQUIRE_BROWSER"):
            pytest.fail("PERCEPT_REQUIRE_BROWSER is set but chromium or chromedriver is not installed")
        pytest.skip("needs chromium and chromedriver (Debian: apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


# Draws the stream's <img> on a canvas and reads pixels: what the page shows, not what the server sent.
READ_PIXELS = """
const img = document.querySelector('.stream img');
if (!img || !img.naturalWidth) return null;
const canvas = document.createElement('canvas');
canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
const g = canvas.getContext('2d');
g.drawImage(img, 0, 0);
const at = (x, y) => Array.from(g.getImageData(x, y, 1, 1).data.slice(0, 3));
const row = Array.from(g.getImageData(0, 105, canvas.width, 1).data);
return {size: [canvas.width, canvas.height], edge: at(40, 60), inside: at(80, 60), row: row.join(',')};
"""


def test_the_page_in_a_real_browser_shows_a_live_stream_with_its_overlays(registry, spawn):
    from conftest import wait_for

    driver = browser()
    try:
        spawn(node="ViewerScene")
        _, base = start_viewer(spawn)
        driver.get(base + "/")
        wait_for(lambda: driver.execute_script(READ_PIXELS) is not None, 30, "the stream in the page")
        first = driver.execute_script(READ_PIXELS)
        assert first["size"] == [160, 120]
        wait_for(
            lambda: (driver.execute_script(READ_PIXELS) or first)["row"] != first["row"],
            10,
            "the stream to update",
        )
        b, g, r = overlay.colour(2)

        def outlined() -> bool:  # the detections' topic may join a frame or two after the image's
            pixels = driver.execute_script(READ_PIXELS)
            return pixels is not None and np.abs(np.array(pixels["edge"]) - [r, g, b]).max() < 40

        wait_for(outlined, 10, "the mug's box outline")
        pixels = driver.execute_script(READ_PIXELS)
        assert np.abs(np.array(pixels["inside"]) - 90).max() < 12, pixels  # and the frame inside it
        page = driver.find_element("tag name", "body").text
        assert "mug 0.90" not in page  # labels are drawn into the picture, not the page
        assert "/viewer_scene" in page and "/detections" in page  # the graph and the topic table
        driver.find_element("css selector", ".stream input.overlays").click()  # overlays off

        def plain_edge() -> bool:
            pixels = driver.execute_script(READ_PIXELS)  # None while the new stream starts
            return pixels is not None and np.abs(np.array(pixels["edge"]) - 90).max() < 12

        wait_for(plain_edge, 10, "the overlays to go")
    finally:
        driver.quit()


def test_eight_tabs_of_the_page_all_stay_live(registry, spawn):
    """A browser keeps 6 connections to a server across its tabs: with an MJPEG stream holding one per
    picture, the seventh tab never loaded and the others' graph stopped updating without a word."""
    from conftest import wait_for

    driver = browser()
    try:
        spawn(node="ViewerScene")
        _, base = start_viewer(spawn)
        tabs = []
        for _ in range(8):
            if tabs:
                driver.switch_to.new_window("tab")
            driver.get(base + "/")
            tabs.append(driver.current_window_handle)
        for tab in (tabs[-1], tabs[0]):  # the last opened and the first: each shows new pictures
            driver.switch_to.window(tab)
            wait_for(lambda: driver.execute_script(READ_PIXELS) is not None, 30, "the stream in the tab")
            first = driver.execute_script(READ_PIXELS)["row"]

            def changed() -> bool:
                pixels = driver.execute_script(READ_PIXELS)
                return pixels is not None and pixels["row"] != first  # noqa: B023

            wait_for(changed, 10, "new pictures")
            status = driver.find_element("id", "status")
            wait_for(lambda: "image streams" in status.text, 10, "the graph's status line")  # noqa: B023
            assert not driver.find_element("id", "problem").is_displayed()
    finally:
        driver.quit()


def test_bench_view_json_contract(tmp_path, monkeypatch):
    from conftest import percept

    # The benchmark measures a graph of its own: a keystore in the environment (which would ask for the
    # viewer's token and refuse the Foxglove link) is not its graph's, and once stopped it with no data.
    assert percept("keys", "generate", str(tmp_path / "keys")).returncode == 0
    monkeypatch.setenv("PERCEPT_KEYSTORE", str(tmp_path / "keys"))
    result = percept("bench", "view", "--seconds", "1", "--links", "view,foxglove", "--json", timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    rows = report["results"]
    assert [(r["link"], r["streams"]) for r in rows] == [
        (link, streams) for link in ("view", "foxglove") for streams in (0, 1, 2)
    ]
    for link in (rows[:3], rows[3:]):
        assert link[0]["fps_delivered"] == 0 and all(r["fps_delivered"] > 5 for r in link[1:])
    assert all(r["link_cpu_percent"] >= 0 and r["limit_per_stream_percent"] == 5.0 for r in rows)
    # A link nobody watches may spend under one 10 ms tick of CPU in the 1 s measured: 0 is a reading.
    assert all(r["link_cpu_percent"] > 0 for r in rows if r["streams"]), "a watched link encodes frames"
    unknown = percept("bench", "view", "--links", "rviz")
    assert unknown.returncode == 1
    assert "--links: expected some of view, foxglove, foxglove-jpeg, found 'rviz'" in unknown.stderr


def test_a_picture_that_cannot_be_drawn_gets_a_one_line_error_and_the_server_goes_on(monkeypatch):
    import threading
    import urllib.error

    from conftest import free_port

    from perception.viewer.server import ViewerServer

    state = ViewerState()
    server = ViewerServer(("127.0.0.1", free_port()), state, 15.0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:

        def broken(topic: str, overlays: bool) -> None:
            raise ValueError("a box at row 2**40")

        monkeypatch.setattr(state, "frame", broken)
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(base + "/snapshot?topic=/camera/image", timeout=10)
        assert failed.value.code == 500 and failed.value.read() == b"ValueError: a box at row 2**40"
        with urllib.request.urlopen(base + "/api/graph", timeout=10) as response:  # still serving
            assert response.status == 200
    finally:
        server.shutdown()
        server.server_close()


def test_a_snapshot_names_its_picture_and_an_unchanged_one_costs_no_bytes():
    """The page pulls pictures: one it has already (If-None-Match) is a 304 without the JPEG."""
    import threading

    from conftest import free_port

    from perception.viewer.server import ViewerServer

    state = ViewerState()
    state.add("/camera/image", grey(1))
    server = ViewerServer(("127.0.0.1", free_port()), state, 15.0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/snapshot?topic=/camera/image"
    try:
        status, headers, body = _request(url, {})
        assert status == 200 and body.startswith(b"\xff\xd8") and headers["ETag"]
        assert _request(url, {"If-None-Match": headers["ETag"]})[::2] == (304, b"")
        state.add("/camera/image", grey(2))  # a new frame: a new picture
        status, again, body = _request(url, {"If-None-Match": headers["ETag"]})
        assert status == 200 and body.startswith(b"\xff\xd8") and again["ETag"] != headers["ETag"]
    finally:
        server.shutdown()
        server.server_close()


def test_an_mjpeg_stream_over_a_slow_link_stays_current():
    """A 40 KB/s link: every picture was sent as it came and queued in the socket's buffers (the audit's
    stream showed pictures up to a minute old). A picture now waits until the link took the last."""
    import socket
    import threading

    from conftest import free_port

    from perception.viewer.server import ViewerServer

    state, stop = ViewerState(), threading.Event()
    noise = np.random.default_rng(0)

    def camera() -> None:  # 30 noisy frames a second (about 20 KB each as JPEG)
        stamp = 0
        while not stop.wait(1 / 30):
            stamp += 1
            pixels = noise.integers(0, 256, (120, 160, 3), np.uint8)
            state.add("/camera/image", msgs.Image(header(stamp), pixels, encoding="rgb8"))

    threading.Thread(target=camera, daemon=True).start()
    server = ViewerServer(("127.0.0.1", free_port()), state, 30.0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    link = socket.socket()
    link.setsockopt(
        socket.SOL_SOCKET, socket.SO_RCVBUF, 16384
    )  # the link holds little: the server's queue grows
    try:
        time.sleep(0.2)
        link.connect(server.server_address)
        link.sendall(b"GET /stream?topic=/camera/image HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        started = time.monotonic()
        while time.monotonic() - started < 4:  # 40 KB/s
            link.recv(4096)
            time.sleep(0.1)
        stop.set()  # the camera stops: what still comes was queued
        link.settimeout(1.0)
        after = b""
        with contextlib.suppress(TimeoutError):
            while chunk := link.recv(65536):
                after += chunk
        # What the link itself holds (the client's buffer) and the picture under way: 3 pictures, 52 KB
        # here, where 1.5 MB (87 pictures, 37 s at 40 KB/s) were queued before.
        assert after.count(b"Content-Type: image/jpeg") <= 4, len(after)
    finally:
        stop.set()
        link.close()
        server.shutdown()
        server.server_close()


def test_a_closed_stream_frees_its_thread_while_its_topic_is_quiet():
    import socket
    import threading

    from conftest import free_port, wait_for

    from perception.viewer.server import ViewerServer

    state = ViewerState()
    state.add("/camera/image", grey(1))  # one frame, then the camera goes quiet
    server = ViewerServer(("127.0.0.1", free_port()), state, 15.0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    handlers = lambda: [t for t in threading.enumerate() if "process_request" in t.name]  # noqa: E731
    before = len(handlers())
    try:
        tab = socket.create_connection(server.server_address, timeout=10)
        tab.sendall(b"GET /stream?topic=/camera/image HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received = b""
        while b"Content-Type: image/jpeg" not in received:  # the response's head, then the frame's
            chunk = tab.recv(65536)
            assert chunk, received
            received += chunk
        assert len(handlers()) == before + 1
        tab.close()
        wait_for(lambda: len(handlers()) == before, timeout_s=5, what="the stream's thread to end")
    finally:
        server.shutdown()
        server.server_close()


# The graph's edges that pass through a box on their way (not their own ends, which they touch): an
# edge skipping a column ran behind the boxes between and seemed to join them.
EDGES_THROUGH_BOXES = """
const boxes = [...document.querySelectorAll('#graph g rect')].map(r => r.getBoundingClientRect());
let through = 0;
for (const path of document.querySelectorAll('#graph path.edge')) {
  const m = path.getScreenCTM(), length = path.getTotalLength();
  for (let at = 2; at < length - 2; at += 2) {
    const p = path.getPointAtLength(at), x = p.x * m.a + m.e, y = p.y * m.d + m.f;
    if (boxes.some(b => x > b.left + 1 && x < b.right - 1 && y > b.top + 1 && y < b.bottom - 1)) { through++; break; }
  }
}
return through;
"""


def test_the_page_lays_out_a_graph_with_cycles_on_the_page_and_says_when_no_registry_answers(
    registry, spawn, tmp_path, monkeypatch
):
    from conftest import free_port, wait_for

    driver = browser()
    try:
        # Two relays feeding each other: /a -> relay_b -> /b -> relay_a -> /a, a cycle.
        spawn("--name", "relay_a", "-r", "in:=/b", "-r", "out:=/a", node="Relay")
        spawn("--name", "relay_b", "-r", "in:=/a", "-r", "out:=/b", node="Relay")
        spawn(node="ViewerScene")
        _, base = start_viewer(spawn)
        driver.set_window_size(1280, 900)
        driver.get(base + "/")
        wait_for(lambda: "/relay_a" in driver.find_element("id", "graph").text, 30, "the relays in the graph")
        time.sleep(2.5)  # a few refreshes: the old layout pushed the cycle a column further each time
        box = driver.execute_script(
            "const s = document.getElementById('graph'); const b = s.getBBox();"
            "return {right: b.x + b.width, width: +s.getAttribute('width'), page: document.body.clientWidth};"
        )
        assert box["right"] <= box["width"] <= 1280, box  # every node and edge within the drawing and page
        assert driver.execute_script(EDGES_THROUGH_BOXES) == 0  # each edge runs around the boxes between
        assert driver.find_element("id", "problem").is_displayed() is False
        driver.save_screenshot(str(tmp_path / "graph-with-cycle.png"))
        assert (tmp_path / "graph-with-cycle.png").stat().st_size > 10_000
    finally:
        driver.quit()

    monkeypatch.setenv("PERCEPT_REGISTRY", f"tcp://127.0.0.1:{free_port()}")
    driver = browser()
    try:
        _, base = start_viewer(spawn)
        driver.get(base + "/")
        problem = driver.find_element("id", "problem")
        wait_for(problem.is_displayed, 20, "the message that no registry answers")
        assert problem.text.startswith("No registry answers at tcp://127.0.0.1:")
        assert "percept launch" in problem.text
        driver.save_screenshot(str(tmp_path / "no-registry.png"))
    finally:
        driver.quit()


def test_the_best_label_of_a_box_keeps_its_place_and_labels_never_cover_each_other():
    canvas = overlay.displayable(grey(0))
    # One object under two names (cross-class duplicate): the best label goes above the box, the other
    # makes room; six distant cars side by side: their labels do not overlap either.
    labels = [("mug 0.90", (40, 30, 120, 90)), ("cup 0.35", (40, 30, 120, 90))]
    labels += [(f"car 0.{50 + i}", (10 + 22 * i, 70, 28 + 22 * i, 80)) for i in range(6)]
    corners = overlay._place_labels(canvas.shape, labels)
    _, h0 = overlay._label_size("mug 0.90")
    assert corners[0] == (40, 30 - h0)  # the best one where a label belongs: on its box's top edge
    rects = [
        (x, y, x + overlay._label_size(t)[0], y + overlay._label_size(t)[1])
        for (t, _), (x, y) in zip(labels, corners, strict=True)
    ]
    for i, a in enumerate(rects):
        for b in rects[i + 1 :]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)
    # Drawn: the best label's colour is on top where it sits.
    from perception.msgs import Detections, Header

    both = Detections(
        Header(), np.array([[40, 30, 120, 90], [40, 30, 120, 90]], np.float32), np.array([0.35, 0.9], np.float32),
        np.array([3, 2], np.int32), ["cube", "mug"],
    )  # fmt: skip
    overlay.draw_detections(canvas, both)
    x, y = corners[0]
    assert tuple(canvas[y + 1, x + 1]) == overlay.colour(2)  # the mug's (best) label, not the cube's


def test_a_tracks_label_makes_room_for_the_detections_label_of_the_same_object():
    """The audit's frame: '#1 cube' was drawn over 'cube 0.92', of which the last digit showed."""
    from perception.msgs import Detections, Header, Tracks

    box = np.array([[40, 30, 120, 90]], np.float32)
    detections = Detections(Header(), box, np.array([0.92], np.float32), np.array([3], np.int32), ["cube"])
    tracks = Tracks(
        Header(), ids=[1], class_ids=[3], class_names=["cube"], xyxy=box, scores=[0.9], velocities=[[0, 0]],
        ages_s=[1.0], ground_positions=[[np.nan] * 3], distances=[np.nan], speeds=[np.nan], times_to_collision=[np.inf],
    )  # fmt: skip
    canvas, labels = overlay.displayable(grey(0)), []
    overlay.draw_detections(canvas, detections, labels)
    overlay.draw_tracks(canvas, tracks, {}, labels)
    (a, b) = labels
    assert a[:2] == (40, 30 - overlay._label_size("cube 0.92")[1])  # the detection's keeps its place
    assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)


def _request(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as refused:
        return refused.code, dict(refused.headers), refused.read()


def test_a_page_of_another_site_cannot_read_the_viewer_by_rebinding_its_name(registry, spawn):
    """Issue 22 (the viewer): DNS rebinding makes a browser send the attacker's name as Host to
    127.0.0.1; a scripted cross-site request carries its Origin. Both are refused; the viewer's own
    names are served."""
    _, base = start_viewer(spawn)
    port = base.rsplit(":", 1)[1]
    for host in (f"attacker.example:{port}", "attacker.example", f"127.0.0.1.attacker.example:{port}"):
        status, _, body = _request(base + "/api/graph", {"Host": host})
        assert status == 403 and b"is not an address this viewer serves" in body, (host, body)
    status, _, body = _request(base + "/api/graph", {"Origin": "http://attacker.example"})
    assert status == 403 and b"is another site" in body
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        assert _request(base + "/api/graph", {"Host": host})[0] == 200
    assert _request(base + "/api/graph", {"Origin": f"http://localhost:{port}"})[0] == 200


def test_off_loopback_the_viewer_asks_for_the_token_it_printed(registry, spawn):
    _, printed = start_viewer(spawn, "--host", "0.0.0.0")
    address, _, token = printed.partition("/?token=")
    assert len(token) >= 20, printed
    base = "http://127.0.0.1:" + address.rsplit(":", 1)[1]
    status, _, body = _request(base + "/api/graph", {})
    assert status == 401 and b"needs its token" in body
    assert _request(base + "/api/graph?token=wrong", {})[0] == 401
    status, headers, _ = _request(base + f"/?token={token}", {})
    assert (
        status == 200 and "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
    )
    cookie = headers["Set-Cookie"].split(";")[0]
    assert _request(base + "/api/graph", {"Cookie": cookie})[0] == 200  # the page's later requests
    assert _request(base + "/api/graph", {"Authorization": f"Bearer {token}"})[0] == 200  # a script's


def test_with_a_keystore_the_viewer_on_loopback_asks_for_the_token_it_printed(keyed_registry, spawn):
    """Audit finding 4: with a keystore keeping other users out of the graph, `percept view` on loopback
    handed them the camera stream and the graph (`curl http://127.0.0.1:PORT/snapshot?topic=...`)."""
    from conftest import wait_for

    spawn(node="ViewerScene", env={"PERCEPT_ENCLAVE": "viewer_scene"})
    _, printed = start_viewer(spawn)  # 127.0.0.1, no --token
    base, _, token = printed.partition("/?token=")
    assert base.startswith("http://127.0.0.1:") and len(token) >= 20, printed
    for path in ("/", "/api/graph", "/snapshot?topic=/camera/image", "/stream?topic=/camera/image"):
        status, _, body = _request(base + path, {})
        assert status == 401 and b"needs its token" in body, (path, status, body)
    assert _request(base + "/api/graph?token=wrong", {})[0] == 401
    status, headers, _ = _request(base + f"/?token={token}", {})
    assert status == 200 and "HttpOnly" in headers["Set-Cookie"]
    cookie = {"Cookie": headers["Set-Cookie"].split(";")[0]}
    wait_for(
        lambda: json.loads(_request(base + "/api/graph", cookie)[2])["streams"] == ["/camera/image"],
        30,
        "the image stream through the keystore's CURVE",
    )
    status, headers, body = _request(base + "/snapshot?topic=/camera/image", cookie)
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
    assert _request(base + "/api/graph", {"Authorization": f"Bearer {token}"})[0] == 200  # a script's


def test_with_a_keystore_the_page_opened_at_its_printed_address_stays_live(keyed_registry, spawn):
    """The page's own requests carry the token in its cookie once the printed address has been opened."""
    from conftest import wait_for

    driver = browser()
    try:
        spawn(node="ViewerScene", env={"PERCEPT_ENCLAVE": "viewer_scene"})
        _, printed = start_viewer(spawn)
        driver.get(printed.partition("?token=")[0])  # the address without its token: refused
        assert "needs its token" in driver.find_element("tag name", "body").text
        driver.get(printed)
        wait_for(lambda: driver.execute_script(READ_PIXELS) is not None, 30, "the stream in the page")
        first = driver.execute_script(READ_PIXELS)["row"]

        def changed() -> bool:
            pixels = driver.execute_script(READ_PIXELS)
            return pixels is not None and pixels["row"] != first

        wait_for(changed, 10, "new pictures")
        assert "/viewer_scene" in driver.find_element("tag name", "body").text
    finally:
        driver.quit()


def test_two_viewers_of_one_host_keep_their_token_cookies_apart():
    """A browser keeps cookies by host, not port: a second viewer on 127.0.0.1 set a cookie of the same
    name, and the first viewer's page, sending the second's token, was refused from then on."""
    import threading

    from conftest import free_port

    from perception.viewer.access import Access
    from perception.viewer.server import ViewerServer

    servers = []
    for token in ("first-token", "second-token"):
        server = ViewerServer(("127.0.0.1", free_port()), ViewerState(), 15.0, Access("127.0.0.1", token))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append((f"http://127.0.0.1:{server.server_address[1]}", token, server))
    try:
        jar = {}  # as a browser keeps them for 127.0.0.1, whatever the port
        for base, token, _ in servers:
            status, headers, _ = _request(f"{base}/?token={token}", {})
            name, _, value = headers["Set-Cookie"].split(";")[0].partition("=")
            assert status == 200 and name.endswith(base.rsplit(":", 1)[1]), name
            jar[name] = value
        cookie = "; ".join(f"{name}={value}" for name, value in jar.items())
        assert len(jar) == 2 and all(
            _request(base + "/api/graph", {"Cookie": cookie})[0] == 200 for base, *_ in servers
        )
    finally:
        for *_, server in servers:
            server.shutdown()
            server.server_close()


def test_an_empty_token_is_refused_at_start(monkeypatch):
    """`--token ''` (or an empty PERCEPT_VIEW_TOKEN) printed an address ending in ?token= and then
    refused every request."""
    from conftest import percept

    for args, env, source in (
        (["--token", ""], None, "--token"),
        (["--token", " "], None, "--token"),
        ([], "", "PERCEPT_VIEW_TOKEN"),
    ):
        if env is None:
            monkeypatch.delenv("PERCEPT_VIEW_TOKEN", raising=False)
        else:
            monkeypatch.setenv("PERCEPT_VIEW_TOKEN", env)
        result = percept("view", "--host", "0.0.0.0", "--port", "0", "--duration", "1", *args)
        assert result.returncode == 1 and "viewer at" not in result.stdout, result
        assert result.stderr.splitlines()[-1] == (
            f"percept: error: {source}: expected a token (or none: off loopback or with a keystore a random "
            f"one is made), found {(args[1] if args else env)!r}"
        ), result.stderr


def test_the_address_a_request_came_in_on_is_served_whatever_the_machine_names_resolve_to():
    """`percept view --host 0.0.0.0` refused a browser using the machine's own interface address when
    that address was not among what its host name resolves to."""
    from perception.viewer.access import Access

    access = Access("0.0.0.0", None)
    headers = {"host": "192.0.2.2:8081", "origin": "http://192.0.2.2:8081"}
    assert access.refusal(headers, {}, local_address="192.0.2.2") is None
    assert access.refusal(headers, {}, local_address="::ffff:192.0.2.2") is None  # a dual-stack socket
    status, reason = access.refusal(headers, {}, local_address="10.1.2.3")
    assert status == 403 and reason.startswith("Host '192.0.2.2:8081' is not an address this viewer serves")
    rebound = {"host": "attacker.example:8081"}  # a rebinding page's name is still refused
    assert access.refusal(rebound, {}, local_address="192.0.2.2")[0] == 403
