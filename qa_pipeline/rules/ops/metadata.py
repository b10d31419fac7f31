"""Call metadata, decided once when the call starts: ``direction``, ``time_of_day``,
``calendar`` and ``start_known``."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Literal

from pydantic import field_validator, model_validator

from ...messages import Direction
from ..lang.base import Strict, parse_range
from .registry import Example, Level, Operator, Trigger, register

if TYPE_CHECKING:
    from ..runtime import nodes as N
    from .compiler import Compiler


def _direction(cx: Compiler, v: Any) -> N.SNode:
    from ..runtime import nodes as N

    return N.SDirection(Direction(v))


register(
    Operator(
        name="direction",
        level=Level.STATIC,
        spec=Direction,
        trigger=Trigger.NO_UTTERANCE,
        summary="the call is `inbound` / `outbound`",
        example=Example({"direction": "inbound"}, found=[("a", 0, 1, "您好")]),
        static=_direction,
    ),
    __name__,
)


class TimeOfDaySpec(Strict):
    """Local call start time inside any of the ranges ``"HH:MM-HH:MM"`` (end exclusive)."""

    between: list[str]

    @field_validator("between", mode="before")
    @classmethod
    def _one(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("between")
    @classmethod
    def _ranges(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("empty list of time ranges")
        for r in v:
            parse_range(r)
        return v


def _time_of_day(cx: Compiler, v: TimeOfDaySpec) -> N.SNode:
    from ..runtime import nodes as N

    return N.STimeOfDay([parse_range(r) for r in v.between])


register(
    Operator(
        name="time_of_day",
        level=Level.STATIC,
        spec=TimeOfDaySpec,
        shorthand=lambda v: {"between": v} if isinstance(v, (list, str)) else v,
        trigger=Trigger.NO_UTTERANCE,
        summary='the call started inside one of the ranges `"HH:MM-HH:MM"` (local time)',
        example=Example({"time_of_day": "09:00-12:00"}, found=[("a", 0, 1, "您好")]),
        static=_time_of_day,
    ),
    __name__,
)

_Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class CalendarSpec(Strict):
    holiday: bool | None = None
    weekday: list[_Weekday] | None = None
    dates: list[dt.date] | None = None

    @model_validator(mode="after")
    def _some(self) -> CalendarSpec:
        if self.holiday is None and self.weekday is None and self.dates is None:
            raise ValueError("calendar needs holiday, weekday or dates")
        return self


def _calendar(cx: Compiler, v: CalendarSpec) -> N.SNode:
    from ..runtime import nodes as N

    return N.SCalendar(v.holiday, list(v.weekday) if v.weekday is not None else None, v.dates)


register(
    Operator(
        name="calendar",
        level=Level.STATIC,
        spec=CalendarSpec,
        trigger=Trigger.NO_UTTERANCE,
        summary="the call's day: a `holiday` (settings), a `weekday`, or one of `dates`",
        example=Example(
            {"calendar": {"weekday": ["tue"]}},
            found=[("a", 0, 1, "您好")],  # the test calls start on Tuesday 2026-03-03
        ),
        static=_calendar,
    ),
    __name__,
)


def _start_known(cx: Compiler, v: Any) -> N.SNode:
    from ..runtime import nodes as N

    return N.SStartKnown(bool(v))


register(
    Operator(
        name="start_known",
        level=Level.STATIC,
        spec=bool,
        trigger=Trigger.NO_UTTERANCE,
        summary="the call's start time is known (time and calendar conditions can be decided)",
        example=Example({"start_known": True}, found=[("a", 0, 1, "您好")]),
        static=_start_known,
    ),
    __name__,
)
