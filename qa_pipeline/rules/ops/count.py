"""``count``: utterances matching a condition, at least / over N in the scope."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, model_validator

from ..lang.base import Strict
from .registry import CPath, Example, Level, Operator, Trigger, register

if TYPE_CHECKING:
    from ..lang.schema import Cond
    from ..runtime import nodes as N
    from .compiler import Compiler


class CountSpec(Strict):
    of: Cond
    at_least: int | None = Field(None, ge=1)
    over: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _one(self) -> CountSpec:
        if (self.at_least is None) == (self.over is None):
            raise ValueError("count needs exactly one of at_least / over")
        return self


def _compile(cx: Compiler, v: CountSpec, p: CPath) -> N.CNode:
    from ..runtime import nodes as N

    return N.CCount(cx.utt_only(v.of, (*p, "of")), v.at_least, v.over, cx.label(v.of))


register(
    Operator(
        name="count",
        level=Level.CALL,
        spec=CountSpec,
        trigger=Trigger.CHILDREN,
        summary="utterances matching `of`: `at_least` N, or `over` N",
        example=Example(
            {"count": {"of": {"keyword": ["好的"]}, "at_least": 2}},
            found=[("a", 0, 1, "好的"), ("a", 2, 3, "好的")],
            missing=[("a", 0, 1, "好的"), ("a", 2, 3, "嗯")],
        ),
        call=_compile,
        children=lambda v: [(".count.of", v.of)],
    ),
    __name__,
)
