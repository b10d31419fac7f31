"""``position``: where the utterance is in the call (turns count the utterance's role)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator, model_validator

from ..lang.base import Strict
from .registry import CPath, Example, Issue, Level, LintCtx, Operator, Trigger, register

if TYPE_CHECKING:
    from ..runtime import nodes as N
    from .compiler import Compiler


class PositionSpec(Strict):
    """Where the utterance is. Turns count the utterance's own role; index < 0 counts from
    the end (decided at call end)."""

    first_seconds: float | None = Field(None, gt=0)
    last_seconds: float | None = Field(None, gt=0)
    first_turns: int | None = Field(None, ge=1)
    last_turns: int | None = Field(None, ge=1)
    index: list[int] | None = None

    @field_validator("index", mode="before")
    @classmethod
    def _idx(cls, v: Any) -> Any:
        return [v] if isinstance(v, int) else v

    @model_validator(mode="after")
    def _some(self) -> PositionSpec:
        if all(v is None for v in self.__dict__.values()):
            raise ValueError(
                "position needs at least one of first_seconds, last_seconds, "
                "first_turns, last_turns, index"
            )
        return self


def _compile(cx: Compiler, v: PositionSpec, p: CPath) -> N.UNode:
    from ..runtime import nodes as N

    pos = N.UPosition(v.first_seconds, v.last_seconds, v.first_turns, v.last_turns, v.index)
    cx.defer(pos.deferred)
    return pos


def _lint(cx: LintCtx, v: PositionSpec) -> list[Issue]:
    out: list[Issue] = []
    if v.first_seconds is not None and v.first_seconds >= cx.max_call_seconds:
        out.append(("error", f"{cx.where}.position: first_seconds beyond the longest call"))
    sc = cx.scope
    if (
        cx.part == "body"
        and sc.first_turns is not None
        and v.index is not None
        and all(i >= sc.first_turns for i in v.index)
    ):
        out.append(("error", f"{cx.where}.position: index outside the scope's first_turns window"))
    return out


register(
    Operator(
        name="position",
        level=Level.UTTERANCE,
        spec=PositionSpec,
        trigger=Trigger.EVERY_UTTERANCE,
        summary="the utterance is among the first / last N turns or seconds, or at `index`",
        example=Example(
            {"position": {"index": [0]}, "keyword": ["您好"]},
            found=[("a", 0, 1, "您好"), ("a", 2, 3, "嗯")],
            missing=[("a", 0, 1, "嗯"), ("a", 2, 3, "您好")],
        ),
        utt=_compile,
        lint=_lint,
    ),
    __name__,
)
