"""The condition operators: one module per operator family, each registering its
operators in :mod:`.registry`. ``FAMILIES`` lists the first ones in the order of
``Cond.operators()`` (labels and lint read operators in that order, and the labels of
today's scorecards depend on it); any other module here is a newer operator, imported
after them in name order, so adding an operator is adding its module."""

import importlib
import pkgutil

from ..lang.registry import batch
from .registry import REGISTRY, Example, Level, Operator, Trigger, register, registered

FAMILIES = (
    "logic",  # all, any, not
    "role",
    "phrases",  # keyword, regex, fuzzy, similar
    "position",
    "nearby",  # proximity, negation
    "entity",
    "holiday",  # holiday_greeting
    "metadata",  # direction, time_of_day, calendar, start_known
    "exists",
    "sequence",
    "timing",  # response_gap, silence, hold, talk_over
    "metrics",  # speech_rate, volume, duration, utterance_count
    "repetition",
    "count",
    "share",
    "stages",
    "outcome",  # hangup, verdicts
)
_NOT_OPERATORS = {"registry", "compiler", "__main__"}
with batch():  # the schema's models are rebuilt once, for all of them
    for _family in FAMILIES:
        importlib.import_module(f"{__name__}.{_family}")
    for _m in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        if _m not in FAMILIES and _m not in _NOT_OPERATORS:
            importlib.import_module(f"{__name__}.{_m}")

__all__ = [
    "FAMILIES",
    "REGISTRY",
    "Example",
    "Level",
    "Operator",
    "Trigger",
    "register",
    "registered",
]
