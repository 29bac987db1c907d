"""Numbers the runtime reads from its environment (PERCEPT_SHM_MB, PERCEPT_MAX_MESSAGE_MB,
PERCEPT_SPIN_US): one reading and one error line for all of them."""

from __future__ import annotations

import math
from collections.abc import Callable


def number_setting(
    name: str, text: str, valid: Callable[[float], bool], expected: str, error: type[Exception]
) -> float:
    """`text`, the value of setting `name`, as a number that `valid` accepts; otherwise `error`, one
    line naming the setting, what was expected and what was found."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan  # fails every comparison `valid` makes
    if not valid(value):
        raise error(f"{name}: expected {expected}, found {text!r}")
    return value
