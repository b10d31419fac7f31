"""Short human labels of conditions (in findings' details), from the operators' labels."""

from __future__ import annotations

from .registry import REGISTRY
from .schema import Cond


def label(c: Cond) -> str:
    """A short human label for a condition (its first phrases): the label of the first
    labelled operator (the role last: phrases say more), else the first operator's name."""
    ops = c.operators()
    ops.sort(key=lambda p: p[0] == "role")
    for op, v in ops:
        lab = REGISTRY[op].label
        if lab is not None:
            return lab(v, label)
    return c.operators()[0][0]
