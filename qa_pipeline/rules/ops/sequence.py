"""``sequence``: an anchor followed (or, with ``missing``, not followed) by another
utterance condition within N turns and/or seconds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, model_validator

from ..lang.base import RoleName, Strict
from .registry import CPath, Example, Level, Operator, Trigger, register

if TYPE_CHECKING:
    from ..lang.schema import Cond
    from ..runtime import nodes as N
    from .compiler import Compiler


class SequenceSpec(Strict):
    """An anchor (``first``) followed by ``then`` within N turns and/or seconds.

    Found for each anchor that is followed in time; with ``missing: true`` found for each
    anchor that is *not* followed (the usual form under ``forbid``)."""

    first: Cond
    then: Cond
    within_turns: int | None = Field(None, ge=1)
    within_seconds: float | None = Field(None, gt=0)
    turn_role: RoleName = "any"
    missing: bool = False

    @model_validator(mode="after")
    def _limit(self) -> SequenceSpec:
        if self.within_turns is None and self.within_seconds is None:
            raise ValueError("sequence needs within_turns and/or within_seconds")
        return self


def _compile(cx: Compiler, v: SequenceSpec, p: CPath) -> N.CNode:
    from ..runtime import nodes as N
    from .compiler import role_or_none

    return N.CSequence(
        cx.utt_only(v.first, (*p, "first")),
        cx.utt_only(v.then, (*p, "then")),
        v.within_turns,
        v.within_seconds,
        role_or_none(v.turn_role),
        v.missing,
        cx.label(v.then),
    )


register(
    Operator(
        name="sequence",
        level=Level.CALL,
        spec=SequenceSpec,
        trigger=Trigger.CHILDREN,
        summary="`first` followed by `then` within N turns / seconds (`missing`: not followed)",
        example=Example(
            {
                "sequence": {
                    "first": {"role": "customer", "keyword": ["投诉"]},
                    "then": {"role": "agent", "keyword": ["抱歉"]},
                    "within_turns": 2,
                }
            },
            found=[("c", 0, 1, "我要投诉"), ("a", 2, 3, "非常抱歉")],
            missing=[("c", 0, 1, "我要投诉"), ("a", 2, 3, "好的")],
        ),
        call=_compile,
        children=lambda v: [(".sequence.first", v.first), (".sequence.then", v.then)],
    ),
    __name__,
)
