"""`percept soak` with kill -9 (issue 22, the fault-injection suite's seeded sample): a node and the
registry killed in turn heal within 3 s, the node downstream is never restarted, and the report is
complete. The long campaigns (30 minutes, 10 kills a node of the shipped graphs) are in
docs/reliability.md."""

from __future__ import annotations

import json

from conftest import percept


def test_a_soak_with_kills_heals_each_within_three_seconds(tmp_path):
    result = percept(
        "soak", "test_camera", "--minutes", "0.45", "--kill-every", "6", "--json",
        "--plot", str(tmp_path / "soak.png"), "--log", str(tmp_path / "graph.log"),
        timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])["results"]
    kills = report["kills"]
    assert [k["target"] for k in kills[:2]] == ["/camera", "registry"], kills
    for kill in kills:
        assert kill["healed_s"] is not None and kill["healed_s"] < 3.0, kill
    nodes = {n["node"]: n for n in report["nodes"]}
    assert nodes["/camera"]["restarts"] >= 1 and nodes["/monitor"]["restarts"] == 0
    assert nodes["/monitor"]["rates"]["</camera/image"] > 10  # it kept receiving across the kills
    assert (tmp_path / "soak.png").stat().st_size > 10_000
    assert "exited with code -9; restarting" in (tmp_path / "graph.log").read_text()
