#!/usr/bin/env bash
# The wheel, installed outside the checkout as a user would: build it, install it alone (the base
# install) in a fresh virtual environment, and from an empty directory run a camera graph on a generated
# video file through the detector and the tracker while `percept record` records it, then `percept bag
# info` on the recording; check that one OpenCV owns cv2. Then add the `sim` extra and run the main demo
# by name, headless. CI runs this after the tests (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
checkout=$PWD
work=$(mktemp -d)
launcher=""
cleanup() {
  [ -n "$launcher" ] && kill "$launcher" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
show() { echo "--- $1"; cat "$1" || true; }

python3 -m venv "$work/venv"
venv="$work/venv/bin"
echo "+ pip wheel (no dependencies) into $work/dist"
"$venv/pip" wheel -q --no-deps -w "$work/dist" . >/dev/null
wheel=$(ls "$work"/dist/percept-*.whl)
echo "wheel: $(basename "$wheel") $(du -k "$wheel" | cut -f1) KiB"

echo "+ pip install $(basename "$wheel")   # the base install"
"$venv/pip" install -q "$wheel" >/dev/null
"$venv/pip" check
owners=$("$venv/pip" list 2>/dev/null | grep -ci '^opencv' || true)
[ "$owners" -eq 1 ] || { echo "expected one OpenCV package, found $owners" >&2; exit 1; }
if "$venv/python" -c "import pybullet" 2>/dev/null; then
  echo "the base install has pybullet; it belongs to the sim extra" >&2
  exit 1
fi

mkdir "$work/run" && cd "$work/run"  # nothing of the checkout here
"$venv/percept" --version
"$venv/python" -m perception --version
"$venv/percept" launch --list
"$venv/python" - <<'EOF'
import cv2
import numpy as np

writer = cv2.VideoWriter("clip.avi", cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
for i in range(30):
    frame = np.full((240, 320, 3), 40, np.uint8)
    cv2.rectangle(frame, (60 + 3 * i, 80), (140 + 3 * i, 180), (30, 160, 220), -1)
    writer.write(frame)
writer.release()
EOF
export PERCEPT_REGISTRY="tcp://127.0.0.1:$((20000 + RANDOM % 12000))"  # below the ephemeral range
"$venv/percept" launch camera_detect source:=clip.avi loop:=true rate:=10 --duration 90 --status-period 4 \
  >launch.log 2>&1 &
launcher=$!
for _ in $(seq 60); do  # until the camera publishes (the registry answers and lists it)
  "$venv/percept" topic list 2>/dev/null | grep -qx /tracks && break
  sleep 0.5
done
"$venv/percept" record -o run.mcap --duration 8 | tee record.log
kill -INT "$launcher"  # Ctrl-C: the launcher stops its nodes and prints its last status table
wait "$launcher" || { show launch.log; exit 1; }
launcher=""
grep -Eq ">/detections [1-9]" launch.log || { show launch.log; echo "no detections flowing" >&2; exit 1; }
grep -Eq ">/tracks [1-9]" launch.log || { show launch.log; echo "no tracks flowing" >&2; exit 1; }
"$venv/percept" bag info run.mcap | tee info.log
for topic in /camera/image /detections /tracks; do
  grep -q "Topic: $topic " info.log || { echo "the recording lacks $topic" >&2; exit 1; }
done
grep -q "chunks compressed: zstd" info.log
# The detector benchmark's timing runs on the base install, its workers without the simulator.
"$venv/percept" bench detect --model models/percept.onnx --frames 3 --workers 2 | tee detect.log
grep -q "percept.onnx" detect.log

echo "+ pip install '$(basename "$wheel")[sim]'"
"$venv/pip" install -q "$wheel[sim]" >/dev/null
"$venv/pip" check
timeout 600 "$venv/percept" launch tabletop_grasp clock:=fast --status-period 0 >demo.log 2>&1 || { show demo.log; exit 1; }
grep "pick loop done" demo.log || { show demo.log; echo "the demo did not finish its pick loop" >&2; exit 1; }
cd "$checkout"
echo "the wheel runs outside the checkout: base graph, recording, bag info, and the demo with [sim]"
