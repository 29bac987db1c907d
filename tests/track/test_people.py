"""The tracker on people: a simulated crowd sequence shipped with the tests, ours beside SORT, ByteTrack
and OC-SORT on the same detections; and `percept bench track --scene crowd`'s contract."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np

# Two 10-second crowd sequences at 30 frames/s (the first 300 frames of `percept bench track --scene
# crowd --truth --sequences 2 --seed 29000 --write-mot DIR`: public-like detections, MOT17's layout).
# Seed 29000 was never used to choose the tracker's settings (docs/benchmarks.md, "Tracking people").
SHIPPED = Path(__file__).parent / "data" / "sim-crowd-29000.tar.gz"


def test_on_the_shipped_crowd_ours_is_at_least_the_best_reference_on_mota_and_idf1(tmp_path):
    from perception.bench import mot

    with tarfile.open(SHIPPED) as archive:
        archive.extractall(tmp_path, filter="data")
    folders = sorted(p for p in tmp_path.iterdir() if (p / "det/det.txt").is_file())
    assert len(folders) == 2
    rows, _ = mot.run(folders, ["ours", *mot.PEERS], "mot17")
    scores = {r.tracker: r for r in rows}
    best_mota = max(scores[name].mota for name in mot.PEERS)
    best_idf1 = max(scores[name].idf1 for name in mot.PEERS)
    assert scores["ours"].mota >= best_mota, scores
    assert scores["ours"].idf1 >= best_idf1, scores
    assert scores["ours"].id_switches < min(scores[name].id_switches for name in ("sort", "bytetrack"))


def test_bench_track_crowd_writes_mot17_folders_scored_as_people(tmp_path):
    from conftest import percept

    result = percept(
        "bench", "track", "--scene", "crowd", "--truth", "--sequences", "1", "--rate", "5",
        "--write-mot", str(tmp_path), "--json", timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["settings"]["scene"] == "crowd" and report["frames"] == 100  # 20 s at 5 frames/s
    assert f"percept bench mot {tmp_path}/* --protocol mot17" in result.stdout  # how to score them
    assert 0.3 < report["mota"] <= 1.0 and 0.3 < report["idf1"] <= 1.0
    sequence = tmp_path / "sim-crowd-1000-00"
    gt = np.loadtxt(sequence / "gt/gt.txt", delimiter=",", ndmin=2)
    det = np.loadtxt(sequence / "det/det.txt", delimiter=",", ndmin=2)
    assert set(gt[:, 7]) == {1} and set(gt[:, 6]) == {1}  # MOT17's pedestrians, all scored
    assert np.all((gt[:, 8] > 0) & (gt[:, 8] <= 1)) and set(det[:, 7]) == {-1}
    assert "frameRate=5" in (sequence / "seqinfo.ini").read_text()
    rerun = percept("bench", "mot", str(sequence), "--protocol", "mot17", "--trackers", "ours", "--json")
    [row] = json.loads(rerun.stdout.strip().splitlines()[-1])["results"]
    # The folder holds what the run scored (boxes rounded to 0.01 px on the way).
    assert abs(row["mota"] - report["mota"]) < 0.01 and abs(row["idf1"] - report["idf1"]) < 0.01
