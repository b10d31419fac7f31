"""The condition operators: one module per operator family, each registering its
operators in :mod:`.registry`. ``FAMILIES`` lists them in the order of
``Cond.operators()`` (labels and lint read operators in that order); a new operator's
module is added at the end."""

import importlib

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
    "occurrences",
)
for _family in FAMILIES:
    importlib.import_module(f"{__name__}.{_family}")

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
