"""``holiday_greeting``: the greeting of the holiday the call falls on (pack settings)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from ..lang.base import Strict
from .registry import CPath, Example, Level, Operator, Trigger, register

if TYPE_CHECKING:
    from ..runtime import nodes as N
    from .compiler import Compiler


class HolidayGreetingSpec(Strict):
    threshold: float = Field(85.0, ge=50, le=100)


def _compile(cx: Compiler, v: HolidayGreetingSpec, p: CPath) -> N.UNode:
    from ..runtime import nodes as N

    cx.holiday_thresholds.add(v.threshold)
    return N.UHolidayGreeting(cx.ix, v.threshold)


register(
    Operator(
        name="holiday_greeting",
        level=Level.UTTERANCE,
        spec=HolidayGreetingSpec,
        shorthand=lambda v: {} if v is True else v,
        trigger=Trigger.EVERY_UTTERANCE,  # the holiday is known per call
        summary="the greeting of the holiday the call falls on (`settings.holidays`)",
        example=Example({"holiday_greeting": True}),
        utt=_compile,
        label=lambda v, label: "节日问候语",
    ),
    __name__,
)
