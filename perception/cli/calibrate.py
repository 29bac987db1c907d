"""percept calibrate camera: intrinsics from a chessboard or ChArUco board (perception/camera/calibrate.py),
from a folder of images, a video or a live camera topic; writes the ROS camera_info YAML the camera
node reads (`calibration:=FILE`)."""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from perception.camera.source import IMAGE_SUFFIXES
from perception.cli.common import check_new_output, overwrite_option, positive_int
from perception.errors import PerceptError

# A video frame whose board corners lie closer than this share of the image's diagonal (8 px at 640x480)
# to a view already kept shows the same pose: a board at rest moves by detection noise (under a pixel),
# a hand-held one by tens of pixels between the frames looked at.
SAME_POSE = 0.01


def register(verbs: Any) -> None:
    calibrate = verbs.add_parser("calibrate", help="Calibrate a camera.").add_subparsers(
        dest="action", required=True
    )
    p = calibrate.add_parser("camera", help="Intrinsics from views of a chessboard or ChArUco board.")
    p.add_argument(
        "--board",
        required=True,
        help="chessboard:COLSxROWS:SQUARE_M or charuco:COLSxROWS:SQUARE_M:MARKER_M (squares, not inner "
        "corners; metres)",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", type=Path, metavar="DIR", help="a folder of images of the board")
    source.add_argument(
        "--video",
        type=Path,
        metavar="FILE",
        help="a video of the board, looked at over its whole length (a pose held still counts once)",
    )
    source.add_argument("--topic", metavar="TOPIC", help="a live image topic (e.g. /camera/image)")
    p.add_argument(
        "--views",
        type=positive_int,
        default=25,
        help="views to collect from a topic; at most, spread over it, from a video",
    )
    p.add_argument("--fisheye", action="store_true", help="OpenCV's fisheye (equidistant) model")
    p.add_argument("--name", default="camera", help="camera_name in the file")
    p.add_argument("--out", type=Path, required=True, help="the calibration YAML to write")
    overwrite_option(p)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for views on a topic")
    p.set_defaults(func=_camera)

    p = calibrate.add_parser(
        "handeye",
        help="Where the camera is on the robot: robot poses paired with views of a board (OpenCV's calibrateHandEye).",
    )
    p.add_argument(
        "--mode",
        required=True,
        choices=["eye-in-hand", "eye-to-hand"],
        help="camera on the gripper, or fixed beside the robot",
    )
    p.add_argument(
        "--board",
        required=True,
        help="chessboard:COLSxROWS:SQUARE_M (one count even, one odd: 9x6) or charuco:COLSxROWS:SQUARE_M:MARKER_M",
    )
    p.add_argument(
        "--calibration",
        required=True,
        type=Path,
        help="the camera's intrinsics (percept calibrate camera's YAML)",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--images", type=Path, metavar="DIR", help="a folder of images of the board (with --poses)"
    )
    source.add_argument("--topic", metavar="TOPIC", help="a live image topic (with --pose-topic)")
    p.add_argument(
        "--poses",
        type=Path,
        help="YAML: image file name -> the gripper's pose in the base frame when it was taken, [x, y, z, qx, qy, qz, qw]",
    )
    p.add_argument(
        "--pose-topic",
        metavar="TOPIC",
        help="the gripper's pose in the base frame, live (PoseStamped; geometry_msgs/PoseStamped through the "
        "ROS 2 bridge), paired with each image by stamp",
    )
    p.add_argument("--views", type=positive_int, default=20, help="views to collect from topics (default 20)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for views on topics")
    p.add_argument(
        "--method",
        default="daniilidis",
        choices=["tsai", "park", "horaud", "andreff", "daniilidis"],
        help="OpenCV's solver (default daniilidis: the most accurate on our simulator's views)",
    )
    p.add_argument("--out", type=Path, required=True, help="the hand-eye YAML to write")
    overwrite_option(p)
    p.set_defaults(func=_handeye)


def _camera(args: argparse.Namespace) -> int:
    from perception.camera.calibrate import (
        MIN_VIEWS,
        Board,
        View,
        calibrate,
        corner_shift_px,
        find_board,
    )

    board = Board.parse(args.board)
    # Before any views are looked at: a live session of minutes may make them.
    check_new_output(args.out, f"--out {args.out}", args.overwrite)
    views: list[View] = []
    names: list[str] = []  # where each view came from: a file, a video's frame, a topic's message
    size: tuple[int, int] | None = None
    seen = found = 0
    unreadable: list[str] = []  # files of --images that OpenCV cannot read: skipped, and said
    same_pose = 0  # video frames whose board stood where an earlier view's did
    for name, image in _frames(args, unreadable):
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        if size is None:
            size = (gray.shape[1], gray.shape[0])
        elif (gray.shape[1], gray.shape[0]) != size:
            raise PerceptError(
                f"{name}: expected {size[0]}x{size[1]} like the first image, found {gray.shape[1]}x{gray.shape[0]}"
            )
        seen += 1
        view = find_board(gray, board)
        if view is None:
            print(f"{name}: no board", flush=True)
            continue
        found += 1
        if args.video or args.topic:
            # A board held still (or brought back) gives the same view again, and one pose counted many
            # times weighs the fit towards it: a frame counts only where its corners moved from every view
            # kept so far. Corner motion, not time, since a video may rest for seconds or sweep in one,
            # and a live camera looks at a board its holder may not have moved yet.
            shifts = [corner_shift_px(view, kept) for kept in views]
            if shifts and min(shifts) < SAME_POSE * math.hypot(*size):
                earlier = int(np.argmin(shifts))
                same_pose += 1
                hint = "; move it to a new pose" if args.topic else ""
                print(f"{name}: board found where it was in {names[earlier]}; left out{hint}", flush=True)
                continue
        print(f"{name}: board found", flush=True)
        views.append(view)
        names.append(name)
        if args.topic and len(views) >= args.views:
            break
    if args.video and len(views) > args.views:  # more poses than asked for: keep some from all of the video
        keep = np.linspace(0, len(views) - 1, args.views).round().astype(int)
        print(
            f"kept {args.views} of the {len(views)} poses found (--views), spread over the video", flush=True
        )
        views, names = [views[i] for i in keep], [names[i] for i in keep]
    if args.topic and len(views) < args.views:
        raise PerceptError(
            f"--topic {args.topic}: expected {args.views} views of the board within {args.timeout:g} s, found "
            f"{len(views)} ({seen} images, {seen - len(views)} without the board)"
            + ("" if views else f"; {_board_hint(args.board, board)}")
        )
    _say_unreadable(unreadable, args.images)
    if size is None and unreadable:
        raise PerceptError(
            f"--images {args.images}: expected images of the board, found only {len(unreadable)} file(s) "
            "OpenCV cannot read"
        )
    if size is None:
        raise PerceptError("calibrate camera: expected images of the board, found none")
    if not views:  # not one: more likely a --board that does not describe the board than bad views
        raise PerceptError(
            f"calibration: expected the board in at least {MIN_VIEWS} views, found it in none of {seen} "
            f"images; {_board_hint(args.board, board)}"
        )
    result = calibrate(views, size, fisheye=args.fisheye)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(result.ros_yaml(args.name))
    K = result.K
    worst = int(np.argmax(result.per_view_rms_px))
    print(
        f"board in {found} of {seen} images"
        + (f" ({len(unreadable)} more not readable, skipped)" if unreadable else "")
        + (f" ({same_pose} where it was in an earlier view, left out)" if same_pose else "")
        + (f"; calibrated from {result.views} of them" if result.views != found else "")
        + f"; RMS reprojection error {result.rms_px:.3f} px "
        f"(worst view {result.per_view_rms_px[worst]:.3f} px: {names[worst]}); "
        f"coverage {result.coverage:.0%} of the image"
    )
    print(
        f"fx {K[0, 0]:.2f}  fy {K[1, 1]:.2f}  cx {K[0, 2]:.2f}  cy {K[1, 2]:.2f}  "
        f"{result.model} {np.array2string(result.D, precision=5, separator=', ')}"
    )
    if result.coverage < 0.5:
        print(
            "coverage is low: move the board towards the image's edges and corners, where distortion is strongest"
        )
    if result.rms_px > 1.0:
        print("the RMS error is high (above 1 px): blurred or mis-detected views? check the board's size")
    print(f"wrote {args.out} (the camera node reads it: calibration:={args.out})")
    return 0


def _board_hint(text: str, board: Any) -> str:
    """What to check when no view showed the board: its size, which is easily counted the other way."""
    if board.kind == "charuco":
        return (
            f"is --board {text} the board? ChArUco is found by its markers: their dictionary "
            f"({board.dictionary}) and the count of squares across and down must both match"
        )
    cols, rows = board.inner
    return (
        f"is --board {text} the board? It counts squares: {board.columns}x{board.rows} squares, so OpenCV "
        f"looks for {cols}x{rows} inner corners (where four squares meet)"
    )


def _handeye(args: argparse.Namespace) -> int:
    from perception.camera import handeye
    from perception.camera.calibrate import Board
    from perception.camera.calibration import load_calibration

    check_new_output(args.out, f"--out {args.out}", args.overwrite)  # before a session with the robot
    board = Board.parse(args.board)
    cols, rows = board.inner
    if board.kind == "chessboard" and cols % 2 == rows % 2:
        raise PerceptError(
            f"--board {args.board}: {cols}x{rows} inner corners look the same turned half round, so some views "
            "would be read upside down; use one even and one odd count of squares (9x6) or a ChArUco board"
        )
    camera = load_calibration(args.calibration)
    if args.images is not None:
        if args.poses is None:
            raise PerceptError("--images: give the robot's pose for each image with --poses FILE")
        robot, boards = _handeye_pairs_from_files(args.images, args.poses, board, camera)
    else:
        if args.pose_topic is None:
            raise PerceptError("--topic: give the topic of the robot's poses with --pose-topic")
        robot, boards = _handeye_pairs_from_topics(args, board, camera)
    result = handeye.solve(robot, boards, args.mode, args.method)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(result.to_yaml())
    t = result.transform[:3, 3]
    print(
        f"{result.mode} from {result.pairs} pairs ({result.method}): camera at ({t[0]:.4f}, {t[1]:.4f}, {t[2]:.4f}) m "
        f"in the {result.parent_frame} frame; residual {result.translation_residual_m * 1000:.2f} mm, "
        f"{result.rotation_residual_deg:.3f} deg"
    )
    if result.pairs < handeye.ENOUGH_PAIRS:
        print(
            f"only {result.pairs} pairs: with fewer than {handeye.ENOUGH_PAIRS} the camera's position erred up to "
            "2.8 mm in our simulator; add arm poses that turn the hand about other axes"
        )
    if result.translation_residual_m > 0.005 or result.rotation_residual_deg > 0.5:
        print(
            "the residual is high: are the poses the gripper's in the base frame, taken when each image was?"
        )
    print(f"wrote {args.out}")
    return 0


def _handeye_pairs_from_files(
    images: Path, poses_file: Path, board: Any, camera: Any
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    import yaml

    from perception.camera import handeye
    from perception.camera.calibrate import find_board
    from perception.geometry import pose_matrix

    try:
        poses = yaml.safe_load(poses_file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PerceptError(f"--poses {poses_file}: cannot read it ({exc})") from None
    if not isinstance(poses, dict):
        raise PerceptError(f"--poses {poses_file}: expected image name: [x, y, z, qx, qy, qz, qw] lines")
    robot, boards = [], []
    unreadable: list[str] = []
    for name, image in _folder_images(images, unreadable):
        pose = poses.get(name)
        if pose is None:
            print(f"{name}: no robot pose in {poses_file.name}; left out")
            continue
        if not (isinstance(pose, list) and len(pose) == 7 and all(isinstance(v, (int, float)) for v in pose)):
            raise PerceptError(
                f"--poses {poses_file}: {name}: expected [x, y, z, qx, qy, qz, qw], found {pose!r}"
            )
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        view = find_board(gray, board)
        print(f"{name}: {'board found' if view is not None else 'no board'}", flush=True)
        if view is None:
            continue
        quaternion = np.asarray(pose[3:], float)
        robot.append(pose_matrix(tuple(pose[:3]), quaternion / np.linalg.norm(quaternion)))
        boards.append(handeye.board_pose(view, camera.K, camera.D, camera.distortion_model))
    _say_unreadable(unreadable, images)
    return robot, boards


MIN_MOVE_M, MIN_TURN_DEG = 0.02, 5.0  # a new view from topics: the arm moved this far from every earlier one


def _handeye_pairs_from_topics(
    args: argparse.Namespace, board: Any, camera: Any
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Views from live topics: each image with the gripper pose of the same stamp (20 ms), kept when the
    arm stands somewhere new (so that an arm held still does not give the same view twice)."""
    from perception.camera import handeye
    from perception.camera.calibrate import find_board
    from perception.geometry import pose_matrix
    from perception.msgs import Image, PoseStamped
    from perception.runtime.graph import tool_node
    from perception.runtime.qos import LATEST_ONLY
    from perception.runtime.sync import StampBuffer

    poses: StampBuffer[PoseStamped] = StampBuffer(200, 0.02)
    latest: list[Any] = []
    robot: list[np.ndarray] = []
    boards: list[np.ndarray] = []
    images = unpaired = no_board = 0
    with tool_node("calibrate_handeye") as node:
        node.create_subscription(Image, args.topic, latest.append, LATEST_ONLY)
        node.create_subscription(PoseStamped, args.pose_topic, poses.add)
        deadline = time.monotonic() + args.timeout
        while len(robot) < args.views and time.monotonic() < deadline:
            node.spin_once(0.05)
            if not latest:
                continue
            msg = latest.pop()
            latest.clear()
            images += 1
            stamped = poses.nearest(msg.header.stamp)
            if stamped is None:
                unpaired += 1
                continue
            gripper = pose_matrix(stamped.pose.position, stamped.pose.orientation)
            if any(
                np.linalg.norm(gripper[:3, 3] - g[:3, 3]) < MIN_MOVE_M
                and handeye.rotation_angle_deg(gripper[:3, :3].T @ g[:3, :3]) < MIN_TURN_DEG
                for g in robot
            ):
                continue  # the arm has not moved on since an earlier view
            data = np.asarray(msg.data)
            to_gray = {"rgb8": cv2.COLOR_RGB2GRAY, "bgr8": cv2.COLOR_BGR2GRAY, "rgba8": cv2.COLOR_RGBA2GRAY}
            gray = cv2.cvtColor(data, to_gray[msg.encoding]) if msg.encoding in to_gray else data
            view = find_board(gray, board)
            if view is None:
                no_board += 1
                continue
            robot.append(gripper)
            boards.append(handeye.board_pose(view, camera.K, camera.D, camera.distortion_model))
            x, y, z = gripper[:3, 3]
            print(f"view {len(robot)}: board found, gripper at ({x:.3f}, {y:.3f}, {z:.3f})", flush=True)
    if len(robot) < args.views:
        raise PerceptError(
            f"--topic {args.topic}: {len(robot)} of {args.views} views within {args.timeout:g} s ({images} "
            f"images: {unpaired} without a pose on {args.pose_topic} within 20 ms, {no_board} without the board)"
        )
    return robot, boards


def _folder_images(folder: Path, unreadable: list[str]) -> Iterator[tuple[str, np.ndarray]]:
    """The images of a folder by name, in order (BGR, as OpenCV reads them). A file OpenCV cannot read
    is left out and its name added to `unreadable` for the caller to say: one broken file among many
    good ones aborted the whole run."""
    if not folder.is_dir():
        raise PerceptError(f"--images {folder}: expected a folder of images, found none there")
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        image = _read_image_quietly(path)
        if image is None:
            unreadable.append(path.name)
            continue
        yield path.name, image


def _read_image_quietly(path: Path) -> np.ndarray | None:
    """cv2.imread without OpenCV's own log line for a broken file (`[ERROR:0@0.170] global
    grfmt_png.cpp ...`): ours names every skipped file in one line."""
    log = cv2.utils.logging
    level = log.getLogLevel()
    log.setLogLevel(log.LOG_LEVEL_SILENT)
    try:
        return cv2.imread(str(path))
    finally:
        log.setLogLevel(level)


def _say_unreadable(unreadable: list[str], folder: Path) -> None:
    """One line for the files of `--images` that were skipped, naming the first few."""
    if not unreadable:
        return
    names = ", ".join(unreadable[:3]) + (f" and {len(unreadable) - 3} more" if len(unreadable) > 3 else "")
    print(f"{folder}: skipped {len(unreadable)} file(s) OpenCV cannot read as an image: {names}", flush=True)


def _frames(args: argparse.Namespace, unreadable: list[str]) -> Iterator[tuple[str, np.ndarray]]:
    if args.images:
        yield from _folder_images(args.images, unreadable)
    elif args.video:
        yield from _video_frames(args.video, args.views * CANDIDATES_PER_VIEW)
    else:
        yield from _topic_frames(args.topic, args.timeout)


# Frames of a video looked at per view asked for: a pose held still collapses to one view, and some frames
# miss the board (blurred, half out of view); four leave room for both, and bound the detector's work
# (a failed search costs the most) whatever the video's length.
CANDIDATES_PER_VIEW = 4


def _video_frames(video: Path, candidates: int) -> Iterator[tuple[str, np.ndarray]]:
    """Up to `candidates` frames spread evenly over the whole video (from its first frame to its last),
    so that every part of it, and so every pose shown, has a chance to count."""
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise PerceptError(f"--video {video}: OpenCV cannot open it")
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    if total <= 0:  # a stream without a frame count in its header: count them
        while capture.grab():
            total += 1
        capture.release()
        capture = cv2.VideoCapture(str(video))
    wanted = set(np.linspace(0, max(total - 1, 0), min(candidates, total)).round().astype(int).tolist())
    print(
        f"{video}: {total} frames; looking at {len(wanted)} of them, spread over the whole video", flush=True
    )
    index = 0
    while (
        index <= max(wanted, default=-1) and capture.grab()
    ):  # grab() alone: no decoding of frames passed over
        if index in wanted:
            ok, frame = capture.retrieve()
            if ok:
                yield f"frame {index}", frame
        index += 1
    capture.release()
    if wanted and index <= max(wanted):
        print(
            f"{video}: it ended at frame {index}, before the {total} of its header; its end was not looked at"
        )


def _topic_frames(topic: str, timeout_s: float) -> Iterator[tuple[str, np.ndarray]]:
    """Frames of a live topic, one every half second (so that the board has moved between views). After
    a second with none, says whether anyone publishes the topic (a mistyped topic waited silently)."""
    from perception.cli.topic import topic_silence
    from perception.msgs import Image
    from perception.runtime.graph import tool_node
    from perception.runtime.qos import LATEST_ONLY

    latest: list[Any] = []
    received = 0
    with tool_node("calibrate") as node:
        node.create_subscription(Image, topic, lambda msg: latest.append(msg), LATEST_ONLY)
        start = time.monotonic()
        deadline = start + timeout_s
        next_take = 0.0
        noticed = False
        while time.monotonic() < deadline:
            node.spin_once(0.05)
            if not received and not noticed and time.monotonic() - start >= 1.0:
                noticed = True
                print(
                    f"{topic_silence(topic)[1]}; waiting up to {timeout_s:g} s (--timeout)",
                    file=sys.stderr,
                    flush=True,
                )
            if latest and time.monotonic() >= next_take:
                msg = latest.pop()
                latest.clear()
                received += 1
                next_take = time.monotonic() + 0.5
                data = np.asarray(msg.data)
                image = (
                    cv2.cvtColor(data, cv2.COLOR_RGB2BGR)
                    if data.ndim == 3 and msg.encoding == "rgb8"
                    else data
                )
                yield f"{topic} #{msg.header.seq}", image
        if not received:  # asked again: a publisher may have come and gone while we waited
            raise PerceptError(f"--topic {topic}: no image within {timeout_s:g} s: {topic_silence(topic)[1]}")
