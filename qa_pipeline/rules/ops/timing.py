"""Timing operators on the call's timeline: ``response_gap``, ``silence``, ``hold`` and
``talk_over``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from ...messages import Role
from ..lang.base import Strict
from .registry import CPath, Example, Level, Operator, Trigger, register

if TYPE_CHECKING:
    from ..lang.schema import Cond
    from ..runtime import nodes as N
    from .compiler import Compiler


class ResponseGapSpec(Strict):
    over: float = Field(gt=0)


def _response_gap(cx: Compiler, v: ResponseGapSpec, p: CPath) -> N.CNode:
    from ..runtime import nodes as N

    return N.CResponseGap(v.over)


register(
    Operator(
        name="response_gap",
        level=Level.CALL,
        spec=ResponseGapSpec,
        shorthand=lambda v: {"over": v} if isinstance(v, (int, float)) else v,
        trigger=Trigger.NO_UTTERANCE,
        summary="the agent answers the customer more than N seconds after they stop",
        example=Example(
            {"response_gap": 5},
            found=[("c", 0, 1, "喂"), ("a", 8, 9, "您好")],
            missing=[("c", 0, 1, "喂"), ("a", 2, 3, "您好")],
        ),
        call=_response_gap,
    ),
    __name__,
)


class SilenceSpec(Strict):
    over: float | None = Field(None, gt=0)
    total_over: float | None = Field(None, gt=0)
    count_from: float = Field(2.0, ge=0)
    except_after: Cond | None = None

    @model_validator(mode="after")
    def _some(self) -> SilenceSpec:
        if self.over is None and self.total_over is None:
            raise ValueError("silence needs over and/or total_over")
        return self


def _silence(cx: Compiler, v: SilenceSpec, p: CPath) -> N.CNode:
    from ..runtime import nodes as N

    ex = cx.utt_only(v.except_after, (*p, "except_after")) if v.except_after else None
    return N.CSilence(v.over, v.total_over, v.count_from, ex)


register(
    Operator(
        name="silence",
        level=Level.CALL,
        spec=SilenceSpec,
        trigger=Trigger.NO_UTTERANCE,
        summary="a silence longer than `over` s, or silences adding up to `total_over` s",
        example=Example({"silence": {"over": 10}}),
        call=_silence,
        children=lambda v: (
            [(".silence.except_after", v.except_after)] if v.except_after is not None else []
        ),
    ),
    __name__,
)


class HoldSpec(Strict):
    min_seconds: float = Field(gt=0)
    notice: Cond
    thanks: Cond
    max_customer_speech: float = Field(3.0, ge=0)


def _hold(cx: Compiler, v: HoldSpec, p: CPath) -> N.CNode:
    from ..runtime import nodes as N

    return N.CHold(
        v.min_seconds,
        cx.utt_only(v.notice, (*p, "notice")),
        cx.utt_only(v.thanks, (*p, "thanks")),
        v.max_customer_speech,
    )


register(
    Operator(
        name="hold",
        level=Level.CALL,
        spec=HoldSpec,
        trigger=Trigger.NO_UTTERANCE,
        summary="a hold of `min_seconds` or more without `notice` before / `thanks` after",
        example=Example(
            {
                "hold": {
                    "min_seconds": 20,
                    "notice": {"keyword": ["请稍候"]},
                    "thanks": {"keyword": ["感谢等待"]},
                }
            }
        ),
        call=_hold,
        children=lambda v: [(".hold.notice", v.notice), (".hold.thanks", v.thanks)],
    ),
    __name__,
)


class TalkOverSpec(Strict):
    min_overlap_ms: float = Field(500.0, gt=0)
    by: Literal["agent", "customer"] = "agent"


def _talk_over(cx: Compiler, v: TalkOverSpec, p: CPath) -> N.CNode:
    from ..runtime import nodes as N

    return N.CTalkOver(v.min_overlap_ms, Role(v.by))


register(
    Operator(
        name="talk_over",
        level=Level.CALL,
        spec=TalkOverSpec,
        trigger=Trigger.NO_UTTERANCE,
        summary="`by` starts speaking over the other for `min_overlap_ms` or more",
        example=Example({"talk_over": {"min_overlap_ms": 500}}),
        call=_talk_over,
    ),
    __name__,
)
