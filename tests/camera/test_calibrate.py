"""`percept calibrate camera` on board images rendered by the simulator, whose intrinsics are known:
fx, fy, cx, cy recovered within 1%, written as a file the camera node loads."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
from conftest import percept, read_until

from perception.camera import load_calibration
from perception.camera.calibrate import Board
from perception.errors import PerceptError
from sim.calibration_board import board_views
from sim.camera import CameraSpec

CAMERA = CameraSpec(
    width=640, height=480, fov_deg=50, eye=(0.0, 0.0, 1.0), target=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0)
)


def rendered_views(count: int, seed: int, board_text: str = "chessboard:10x7:0.03"):
    """`count` views of the printed board rendered by the simulator's camera, and its true K."""
    texture, size = Board.parse(board_text).image()
    return board_views(texture, size, count=count, seed=seed, camera=CAMERA)


def write_views(folder, frames):
    """The rendered views as PNG files in `folder`, in order."""
    folder.mkdir()
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:02d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return folder


def write_video(path, frames):
    """The rendered frames as an MJPG video at 10 frames a second."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.mark.parametrize("board_text", ["chessboard:10x7:0.03", "charuco:10x7:0.03:0.022"])
def test_intrinsics_from_rendered_board_views_within_one_percent(tmp_path, board_text):
    frames, K = rendered_views(16, seed=3, board_text=board_text)
    folder = write_views(tmp_path / "views", frames)
    out = tmp_path / "camera.yaml"
    result = percept(
        "calibrate", "camera", "--board", board_text, "--images", str(folder), "--out", str(out), "--name", "sim",
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "RMS reprojection error" in result.stdout and "coverage" in result.stdout
    assert re.search(r"\(worst view [\d.]+ px: \d\d\.png\)", result.stdout), result.stdout  # which one
    calibration = load_calibration(out)
    assert (calibration.width, calibration.height, calibration.name) == (640, 480, "sim")
    found = calibration.K[[0, 1, 0, 1], [0, 1, 2, 2]]
    truth = K[[0, 1, 0, 1], [0, 1, 2, 2]]
    assert np.all(np.abs(found - truth) / truth < 0.01), (found, truth)


def test_fisheye_model_and_too_few_views(tmp_path):
    frames, K = rendered_views(12, seed=5)
    folder = write_views(tmp_path / "views", frames)
    out = tmp_path / "fisheye.yaml"
    result = percept(
        "calibrate", "camera", "--board", "chessboard:10x7:0.03", "--images", str(folder), "--fisheye",
        "--out", str(out), timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    calibration = load_calibration(out)
    assert calibration.distortion_model == "equidistant" and len(calibration.D) == 4
    assert abs(calibration.K[0, 0] - K[0, 0]) / K[0, 0] < 0.02  # a pinhole seen through the fisheye model
    for extra in list(folder.iterdir())[3:]:
        extra.unlink()
    few = percept(
        "calibrate", "camera", "--board", "chessboard:10x7:0.03", "--images", str(folder),
        "--out", str(tmp_path / "few.yaml"),
    )  # fmt: skip
    assert few.returncode == 1
    assert few.stderr.strip().endswith("calibration: expected the board in at least 6 views, found 3")


@pytest.mark.parametrize(
    "text", ["chessboard:10:0.03", "checkers:10x7:0.03", "charuco:10x7:0.03:0.05", "chessboard:2x7:0.03"]
)
def test_a_bad_board_is_one_line(text):
    with pytest.raises(PerceptError, match=r"--board"):
        Board.parse(text)


def test_views_from_a_video(tmp_path):
    frames, K = rendered_views(14, seed=7)
    video = write_video(tmp_path / "board.avi", frames)
    out = tmp_path / "camera.yaml"
    result = percept(
        "calibrate", "camera", "--board", "chessboard:10x7:0.03", "--video", str(video), "--views", "10",
        "--out", str(out), timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    fx = load_calibration(out).K[0, 0]
    assert abs(fx - K[0, 0]) / K[0, 0] < 0.01


def test_views_from_a_live_topic(tmp_path, registry, spawn):
    frames, K = rendered_views(12, seed=11)
    folder = write_views(tmp_path / "views", frames)
    spawn("-p", f"folder:={folder}", "-r", "image:=/board", node="ImageFolder")
    out = tmp_path / "camera.yaml"
    result = percept(
        "calibrate", "camera", "--board", "chessboard:10x7:0.03", "--topic", "/board", "--views", "8",
        "--out", str(out), timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "/board #" in result.stdout and "board in 8 of" in result.stdout
    fx = load_calibration(out).K[0, 0]
    assert abs(fx - K[0, 0]) / K[0, 0] < 0.01


def test_a_live_board_that_does_not_move_counts_once(tmp_path, registry, spawn):
    """A camera looking at a board its holder has not moved yet sees the same pose twice a second."""
    frames, _ = rendered_views(2, seed=11)
    spawn(
        "-p", f"folder:={write_views(tmp_path / 'views', frames)}", "-r", "image:=/board", node="ImageFolder"
    )
    result = percept(
        "calibrate", "camera", "--board", "chessboard:10x7:0.03", "--topic", "/board", "--views", "3",
        "--timeout", "8", "--out", str(tmp_path / "camera.yaml"), timeout=60,
    )  # fmt: skip
    assert result.returncode == 1 and "expected 3 views of the board within 8 s, found 2" in result.stderr
    assert "; left out; move it to a new pose" in result.stdout, result.stdout


def test_an_existing_out_is_refused_before_any_view_is_looked_at(tmp_path):
    board = Board.parse("chessboard:10x7:0.03")
    folder = tmp_path / "views"
    folder.mkdir()
    # One view: a run that read it would print "flat.png: board found".
    cv2.imwrite(str(folder / "flat.png"), board.image()[0])
    out = tmp_path / "camera.yaml"
    out.write_text("an earlier calibration\n")
    result = percept(
        "calibrate", "camera", "--board", "chessboard:10x7:0.03", "--images", str(folder), "--out", str(out)
    )
    assert result.returncode == 1 and result.stdout == ""  # refused first: flat.png was never read
    assert result.stderr == f"percept: error: --out {out}: the file exists; give --overwrite to replace it\n"
    assert out.read_text() == "an earlier calibration\n"


def test_a_topic_nobody_publishes_is_said_at_once_and_at_the_timeout(tmp_path, registry, spawn):
    out = tmp_path / "camera.yaml"
    board = ("calibrate", "camera", "--board", "chessboard:10x7:0.03", "--out", str(out))
    waiting = spawn(*board, "--topic", "/camera/imag", "--timeout", "60")
    said = read_until(waiting, "waiting up to 60 s", timeout_s=30)
    assert "nobody publishes /camera/imag; waiting up to 60 s (--timeout)" in said, said
    assert waiting.poll() is None  # said while it waits, not when it gives up
    timed_out = percept(*board, "--topic", "/camera/imag", "--timeout", "3")
    assert timed_out.returncode == 1 and "not enough views" not in timed_out.stderr
    assert timed_out.stderr.endswith(
        "percept: error: --topic /camera/imag: no image within 3 s: nobody publishes /camera/imag\n"
    ), timed_out.stderr
    assert not out.exists()


def test_an_unreadable_image_is_skipped_and_named(tmp_path):
    frames, K = rendered_views(8, seed=3)
    folder = write_views(tmp_path / "views", frames)
    (folder / "05 broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")  # a PNG's signature, then nothing
    out = tmp_path / "camera.yaml"
    out.write_text("an earlier calibration\n")
    result = percept(
        "calibrate", "camera", "--board", "chessboard:10x7:0.03", "--images", str(folder), "--out", str(out),
        "--overwrite", timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""  # OpenCV's own error line for the file is not shown: ours names it
    assert f"{folder}: skipped 1 file(s) OpenCV cannot read as an image: 05 broken.png\n" in result.stdout
    assert "board in 8 of 8 images (1 more not readable, skipped)" in result.stdout
    fx = load_calibration(out).K[0, 0]  # --overwrite replaced the earlier file, with the 8 good views
    assert abs(fx - K[0, 0]) / K[0, 0] < 0.01


def test_a_board_of_the_wrong_size_is_hinted_at(tmp_path):
    frames, _ = rendered_views(4, seed=5)
    folder = write_views(tmp_path / "views", frames)
    # 9x6 is the board's inner corners, given where its squares are asked for: no view matches.
    result = percept(
        "calibrate", "camera", "--board", "chessboard:9x6:0.03", "--images", str(folder),
        "--out", str(tmp_path / "camera.yaml"), timeout=120,
    )  # fmt: skip
    assert result.returncode == 1 and result.stdout.count(": no board\n") == 4, result.stdout
    assert result.stderr == (
        "percept: error: calibration: expected the board in at least 6 views, found it in none of 4 images; "
        "is --board chessboard:9x6:0.03 the board? It counts squares: 9x6 squares, so OpenCV looks for 8x5 "
        "inner corners (where four squares meet)\n"
    )


def test_a_video_counts_a_resting_pose_once_and_is_looked_at_to_its_end(tmp_path):
    poses, K = rendered_views(10, seed=7)
    # The board rests in its first pose for 3 s, then moves through the other nine, 0.2 s each.
    frames = [poses[0]] * 30 + [pose for pose in poses[1:] for _ in range(2)]
    video = write_video(tmp_path / "board.avi", frames)
    out = tmp_path / "camera.yaml"
    result = percept(
        "calibrate", "camera", "--board", "chessboard:10x7:0.03", "--video", str(video), "--views", "10",
        "--out", str(out), timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{video}: 48 frames; looking at 40 of them, spread over the whole video" in result.stdout
    used = re.findall(r"^frame (\d+): board found$", result.stdout, re.MULTILINE)
    # One view of each pose: frame 0 for the resting one, and one from the last pose (frames 46, 47).
    assert len(used) == 10 and used[0] == "0" and int(used[-1]) >= 46, result.stdout
    assert "frame 29: board found where it was in frame 0; left out" in result.stdout
    assert "board in 40 of 40 images (30 where it was in an earlier view, left out); calibrated from 10" in (
        result.stdout
    )
    fx = load_calibration(out).K[0, 0]
    assert abs(fx - K[0, 0]) / K[0, 0] < 0.01
