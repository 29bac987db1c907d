"""The pick policy on arrays alone: which grasp to try, when a loop stops (shared by the pick-loop node
and `percept bench grasp`)."""

import numpy as np
import pytest

from perception.grasp import Action, PickLimits, PickPolicy
from perception.installed import LAUNCH_DIR

X, Y = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])


def grasps(*points):
    return np.array(points, np.float64).reshape(-1, 3), np.array([X] * len(points)).reshape(-1, 3)


def test_three_empty_frames_in_a_row_mean_a_clear_table():
    policy = PickPolicy()
    for _ in range(2):
        assert policy.choose(*grasps(), []) is None and not policy.done
    assert policy.choose(*grasps(), []) is None
    assert policy.done and policy.cleared and policy.ended == "the table is clear"


def test_a_frame_with_grasps_starts_the_count_of_empty_frames_again():
    policy = PickPolicy(PickLimits(clear_frames=2))
    policy.choose(*grasps(), [])
    assert policy.choose(*grasps((0.5, 0, 0)), []).index == 0
    policy.record(np.array([0.5, 0, 0]), X, success=True)
    policy.choose(*grasps(), [])
    assert not policy.done
    policy.choose(*grasps(), [])
    assert policy.cleared and policy.attempts == 1 and policy.successes == 1


def test_a_failed_grasp_is_not_tried_again_and_the_next_one_is():
    policy = PickPolicy()
    positions, closings = grasps((0.5, 0, 0), (0.6, 0, 0))
    assert policy.choose(positions, closings, []).index == 0
    policy.record(positions[0], closings[0], success=False)
    assert policy.choose(positions, closings, []).index == 1  # the failed one is skipped
    assert policy.failures_in_row == 1 and not policy.done


def test_only_failed_grasps_on_offer_ends_the_loop_after_clear_frames():
    policy = PickPolicy()
    positions, closings = grasps((0.5, 0, 0))
    policy.choose(positions, closings, [])
    policy.record(positions[0], closings[0], success=False)
    for _ in range(3):
        assert policy.choose(positions, closings, []) is None
    assert policy.ended == "1 grasp(s) left, each failed before" and not policy.cleared


def test_objects_without_a_feasible_grasp_end_the_loop_with_the_reason():
    policy = PickPolicy()
    for _ in range(3):
        policy.choose(*grasps(), ["8.4 cm across, wider than the opening"])
    assert policy.ended == "1 object(s) left without a grasp: 8.4 cm across, wider than the opening"


def test_failures_in_a_row_and_the_attempt_limit_stop_the_loop():
    policy = PickPolicy(PickLimits(max_failures=2))
    for x in (0.3, 0.4):
        policy.record(np.array([x, 0, 0]), X, success=False)
    assert policy.ended == "2 failures in a row"
    policy = PickPolicy(PickLimits(max_actions=3))
    for x in (0.3, 0.4, 0.5):
        assert not policy.done
        policy.record(np.array([x, 0, 0]), Y, success=True)
    assert policy.ended == "3 actions (3 grasps, 0 pushes), the most allowed" and policy.successes == 3
    assert policy.choose(*grasps((0.6, 0, 0)), []) is None  # over: nothing more is chosen


@pytest.mark.parametrize("field", ["max_actions", "max_failures", "clear_frames"])
def test_limits_below_one_are_refused_by_name(field):
    with pytest.raises(
        ValueError, match=f"pick limit {field}: expected a whole number of at least 1, found 0"
    ):
        PickLimits(**{field: 0})


def test_the_pick_loop_node_and_the_benchmark_share_the_policy_and_the_demo_settings():
    import yaml

    from perception.bench.grasp import DETECTOR_CONFIDENCE, PANDA_REACH, TABLE_X, TABLE_Y
    from perception.nodes.pick_loop import PickLoop
    from perception.runtime.harness import NodeHarness

    launch = yaml.safe_load((LAUNCH_DIR / "tabletop_grasp.yaml").read_text())
    detector = next(n for n in launch["nodes"] if n["name"] == "detector")["parameters"]
    assert detector["confidence"] == DETECTOR_CONFIDENCE
    planner = next(n for n in launch["nodes"] if n["name"] == "grasp_planner")["parameters"]
    assert (tuple(planner["workspace_x"]), tuple(planner["workspace_y"])) == (TABLE_X, TABLE_Y)
    assert planner["workspace_reach"] == PANDA_REACH
    with NodeHarness(PickLoop) as harness:
        defaults = PickLimits()
        assert harness.node.policy.limits == defaults
        assert harness.node.get_parameter("max_actions") == defaults.max_actions
        assert harness.node.get_parameter("max_pushes") == defaults.max_pushes


S, E = np.array([[0.4, 0.0, 0.015]]), np.array([[0.49, 0.0, 0.015]])  # one push on offer


def test_a_push_is_made_only_when_no_grasp_can_be_tried():
    from perception.grasp import GRASP, PUSH

    policy = PickPolicy()
    positions, closings = grasps((0.5, 0, 0))
    assert policy.choose(positions, closings, ["too wide"], S, E).kind == GRASP  # a grasp comes first
    policy.record(positions[0], closings[0], success=False)
    action = policy.choose(positions, closings, ["too wide"], S, E)  # the grasp failed before: push
    assert action.kind == PUSH and action.index == 0
    policy.record_push(S[0], E[0])
    # The push moved things: the grasp that failed may be tried again.
    assert policy.choose(positions, closings, [], S, E).kind == GRASP
    assert policy.pushes == 1 and policy.attempts == 1 and policy.actions == 2


def test_the_same_push_is_not_made_twice_and_pushes_in_a_row_are_bounded():
    from perception.grasp import PUSH

    policy = PickPolicy(PickLimits(max_pushes=2))
    assert policy.choose(*grasps(), ["too wide"], S, E).kind == PUSH
    policy.record_push(S[0], E[0])
    for _ in range(3):  # only that push on offer: stuck, as without pushes
        assert policy.choose(*grasps(), ["too wide"], S, E) is None
    assert policy.ended == "1 object(s) left without a grasp: too wide (1 push(es) since the last grasp)"

    policy = PickPolicy(PickLimits(max_pushes=2))
    for shift in (0.0, 0.05):
        assert policy.choose(*grasps(), ["too wide"], S + shift, E + shift).kind == PUSH
        policy.record_push(S[0] + shift, E[0] + shift)
    assert policy.choose(*grasps(), ["too wide"], S + 0.1, E + 0.1) is None  # two in a row: the most
    positions, closings = grasps((0.5, 0, 0))
    policy.choose(positions, closings, [], S, E)
    policy.record(positions[0], closings[0], success=True)  # a grasp that works starts them again
    assert policy.choose(*grasps(), ["too wide"], S, E).kind == PUSH


def test_grasps_and_pushes_count_together_towards_the_most_actions():
    policy = PickPolicy(PickLimits(max_actions=2))
    policy.choose(*grasps(), ["too wide"], S, E)
    policy.record_push(S[0], E[0])
    positions, closings = grasps((0.5, 0, 0))
    policy.choose(positions, closings, [], S, E)
    policy.record(positions[0], closings[0], success=True)
    assert policy.ended == "2 actions (1 grasps, 1 pushes), the most allowed"
    with pytest.raises(ValueError, match="max_pushes: expected a whole number of at least 0, found -1"):
        PickLimits(max_pushes=-1)


def test_after_a_failure_another_object_is_tried_first():
    from perception.grasp import GRASP

    policy = PickPolicy()
    # Best first: two grasps on one object (2 cm apart, turned), then one on another object 20 cm away.
    positions = np.array([[0.5, 0.0, 0.02], [0.5, 0.02, 0.02], [0.7, 0.0, 0.02]])
    closings = np.array([X, Y, X])
    assert policy.choose(positions, closings, []) == Action(GRASP, 0)
    policy.record(positions[0], closings[0], success=False)
    assert policy.choose(positions, closings, []) == Action(GRASP, 2)  # not the first object's other grasp
    policy.record(positions[2], closings[2], success=True)
    assert policy.choose(positions[:2], closings[:2], []) == Action(GRASP, 1)  # then back to it
