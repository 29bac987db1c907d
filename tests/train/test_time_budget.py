"""`percept train --minutes`: the step count follows the speed as it drifts, so a run ends inside its
budget and near it, whether the steps speed up or slow down after the first measure."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from perception.train.fit import TIME_MARGIN, steps_in_budget


def _run(minutes: float, speeds: list[float], checkpoint_every: int = 500, first: int = 300) -> float:
    """Seconds a run of this budget takes when its step time is speeds[i] in its i-th block of 500
    steps, re-estimating as train() does: after `first` steps, then at every checkpoint, each time
    from the speed since the last."""
    elapsed, step, steps, since = 0.0, 0, None, (0.0, 0)
    while steps is None or step < steps:
        per_step = speeds[min(step // checkpoint_every, len(speeds) - 1)]
        if step == first or (steps is not None and step % checkpoint_every == 0):
            measured = (elapsed - since[0]) / (step - since[1])  # since the last measure, as train()
            steps = steps_in_budget(step, elapsed, measured, minutes)
            since = (elapsed, step)
        if elapsed >= minutes * 60:
            steps = step + 1  # the budget is a limit
        elapsed += per_step
        step += 1
    return elapsed


@pytest.mark.parametrize("speeds", [[0.5], [0.5, 0.45, 0.42, 0.4, 0.38], [0.4, 0.45, 0.5, 0.55]])
def test_a_run_ends_inside_its_budget_and_near_it(speeds):
    seconds = _run(10, speeds)
    over = 2 * max(speeds)  # the step that passes the budget, and the one after it (the last: it exports)
    assert 0.9 * 600 <= seconds <= 600 + over, f"{seconds / 60:.2f} min for a 10 min budget at {speeds}"


def test_the_steps_left_are_what_the_time_left_holds():
    assert steps_in_budget(1000, 300.0, 0.5, 10) == 1000 + int(TIME_MARGIN * 300 / 0.5)
    assert steps_in_budget(1000, 700.0, 0.5, 10) == 1001, "past the budget: one more step, then stop"
