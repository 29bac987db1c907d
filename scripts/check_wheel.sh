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
trap 'rm -rf "$work"' EXIT

echo "+ pip wheel (no dependencies) into $work/dist"
python3 -m pip wheel -q --no-deps -w "$work/dist" . >/dev/null
wheel=$(ls "$work"/dist/percept-*.whl)
echo "wheel: $(basename "$wheel") $(du -k "$wheel" | cut -f1) KiB"

python3 -m venv "$work/venv"
venv="$work/venv/bin"
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
export PERCEPT_REGISTRY="tcp://127.0.0.1:$((20000 + RANDOM % 20000))"
"$venv/percept" launch camera_detect source:=clip.avi loop:=true rate:=10 --duration 14 --status-period 6 \
  >launch.log 2>&1 &
launcher=$!
sleep 3
"$venv/percept" record -o run.mcap --duration 8 | tee record.log
wait "$launcher" || { cat launch.log; exit 1; }
grep -q "/detections" launch.log || { cat launch.log; echo "no detections in the status table" >&2; exit 1; }
grep -q "/tracks" launch.log || { cat launch.log; echo "no tracks in the status table" >&2; exit 1; }
"$venv/percept" bag info run.mcap | tee info.log
for topic in /camera/image /detections /tracks; do
  grep -q "Topic: $topic " info.log || { echo "the recording lacks $topic" >&2; exit 1; }
done
grep -q "chunks compressed: zstd" info.log

echo "+ pip install '$(basename "$wheel")[sim]'"
"$venv/pip" install -q "$wheel[sim]" >/dev/null
"$venv/pip" check
"$venv/percept" launch tabletop_grasp --status-period 0 clock:=fast 2>&1 | tee demo.log | grep "pick loop done"
grep -q "pick loop done (the table is clear)" demo.log
cd "$checkout"
echo "the wheel runs outside the checkout: base graph, recording, bag info, and the demo with [sim]"
