"""Scenario suites: rendered once and cached, keyed by what makes their frames; a corrupt or foreign
cache is named, never used; the same results in this process, in worker processes and on a Dask
LocalCluster of two workers."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
from conftest import percept

from perception.bench import detect, fanout, suites
from perception.errors import PerceptError
from perception.installed import DEFAULT_MODEL

TINY = suites.Suite(
    "tiny", "tabletop", 4, 4200, factors=("occlusion",), severities=(2,), width=320, height=240
)


def test_a_suite_renders_once_then_comes_from_the_cache(tmp_path):
    with fanout.open_pool(1) as pool:
        first, source = suites.load_or_render(TINY, pool, tmp_path)
        assert source.startswith("rendered by this process, cached in")
        again, source = suites.load_or_render(TINY, pool, tmp_path)
    assert source.startswith("cache ")
    assert list(first) == list(again) == ["clean", "occlusion-2"]
    for label in first:
        assert all(
            np.array_equal(a, b) for a, b in zip(first[label].images, again[label].images, strict=True)
        )
        assert first[label].truth == again[label].truth and len(again[label].images) == 4
    assert first["clean"].truth != first["occlusion-2"].truth  # the occluders show in the truth


def test_a_changed_simulator_or_suite_renders_a_new_folder(tmp_path, monkeypatch):
    key = suites.cache_key(TINY)
    assert suites.cache_key(suites.Suite(**{**asdict(TINY), "seed": 1})) != key
    monkeypatch.setattr(suites, "simulator_version", lambda: "another simulator")
    assert suites.cache_key(TINY) != key


def _cached(tmp_path):
    with fanout.open_pool(1) as pool:
        suites.load_or_render(TINY, pool, tmp_path)
    (folder,) = tmp_path.iterdir()
    return folder


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda f: (f / "manifest.json").write_text("{not json"), "expected a readable manifest.json"),
        (
            lambda f: (f / "occlusion-2" / "000003.png").unlink(),
            "expected a 320x240 PNG at occlusion-2/000003.png",
        ),
        (
            lambda f: (f / "clean" / "truth.json").write_text("[]"),
            "clean/truth.json does not match its checksum",
        ),
        (
            lambda f: (f / "manifest.json").write_text(
                json.dumps({**json.loads((f / "manifest.json").read_text()), "key": "0123"})
            ),
            "another suite's frames",
        ),
    ],
    ids=["manifest", "image", "truth", "foreign"],
)
def test_a_corrupt_or_foreign_cache_is_named_not_used(tmp_path, spoil, message):
    folder = _cached(tmp_path)
    spoil(folder)
    with fanout.open_pool(1) as pool, pytest.raises(PerceptError, match=message) as error:
        suites.load_or_render(TINY, pool, tmp_path)
    assert str(folder) in str(error.value) and "\n" not in str(error.value)


def _scores(pool, cache):
    outcome = detect.run(
        [str(DEFAULT_MODEL)],
        TINY,
        0,
        0,
        threads=1,
        corruptions=["jpeg"],
        severities=(3,),
        pool=pool,
        cache=cache,
    )
    (row,) = outcome.rows
    return row.evaluation, row.robustness


def test_worker_processes_and_a_dask_cluster_give_the_results_of_one_process(tmp_path):
    # Rendered once by two workers, then scored from the cache by each pool (EGL's pixels are not
    # bit-exact from run to run, so scoring always reads a suite's cached frames).
    with fanout.open_pool(2) as pool:
        assert pool.description == "2 local worker processes"
        workers = _scores(pool, tmp_path)
    with fanout.open_pool(1) as pool:
        alone = _scores(pool, tmp_path)
    pytest.importorskip("distributed", reason="the cluster extra")
    with fanout.open_pool(1, "local:2") as pool:
        assert pool.description == "a Dask LocalCluster of 2 workers (2 workers)"
        cluster = _scores(pool, tmp_path)
    assert alone == workers == cluster
    evaluation, robustness = alone
    assert evaluation["map50"] > 0.8 and set(robustness["factors"]) == {"occlusion"}
    assert robustness["factors"]["occlusion"][0] < evaluation["map50_95"]
    assert set(robustness["corruptions"]) == {"jpeg"} and 0 < robustness["rpc"] <= 1.2


def test_an_unreachable_cluster_is_one_line():
    pytest.importorskip("distributed", reason="the cluster extra")
    unreachable = r"--cluster: cannot reach a Dask scheduler at tcp://127.0.0.1:9"
    with (
        pytest.raises(PerceptError, match=unreachable),
        fanout.open_pool(1, "tcp://127.0.0.1:9", connect_timeout_s=2),
    ):
        pass


def test_the_cli_lists_suites_and_names_a_wrong_one():
    listing = percept("bench", "detect", "--list-suites")
    assert listing.returncode == 0
    for name in ("tabletop-standard", "driving-standard", "tabletop-robustness", "driving-robustness"):
        assert name in listing.stdout
    wrong = percept("bench", "detect", "--model", "m.onnx", "--suite", "kitchen")
    assert wrong.returncode != 0 and "--suite: expected one of tabletop-standard" in wrong.stderr
    factor = percept("bench", "detect", "--model", "m.onnx", "--scene", "driving", "--factors", "clutter")
    assert factor.returncode != 0 and "--factors: 'clutter' is none of all" in factor.stderr


def test_the_cli_renders_factors_with_workers_and_writes_the_whole_report(tmp_path):
    result = percept(
        "bench", "detect", "--model", str(DEFAULT_MODEL), "--scene", "tabletop", "--frames", "3",
        "--factors", "lighting", "--severities", "2", "--corruptions", "fog", "--workers", "2",
        "--out", str(tmp_path / "report"), "--json", timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["workers"] == "2 local worker processes"
    assert set(report["phases_s"]) >= {"frames", "timing", "inference", "evaluation", "report", "total"}
    (row,) = report["models"]
    assert set(row["robustness"]["factors"]) == {"lighting"} and set(row["robustness"]["corruptions"]) == {
        "fog"
    }
    assert set(row["evaluation"]["pr_curves50"]) == {c["name"] for c in row["evaluation"]["classes"]}
    files = {p.name for p in (tmp_path / "report").iterdir()}
    assert {
        "pr_percept.png",
        "confusion_percept.png",
        "examples_percept.png",
        "robustness_factors.png",
    } <= files
    assert "simulator factors" in result.stdout and "detectors side by side" in result.stdout


def test_bench_render_compares_worker_counts_on_the_same_frames():
    result = percept(
        "bench",
        "render",
        "--suite",
        "tabletop-standard",
        "--frames",
        "4",
        "--workers",
        "1,2",
        "--json",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    one, two = report["results"]
    assert (
        one["frames"] == two["frames"] == 4
        and one["truth_digest"] == two["truth_digest"]
        and two["same_truth"]
    )
    assert two["pool"] == "2 local worker processes" and two["speedup"] > 0
    assert "speed-up" in result.stdout
