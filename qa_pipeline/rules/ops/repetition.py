"""``repetition``: the same sentence said N times (fuzzy-equal)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from ..lang.base import RoleName, Strict
from .registry import CPath, Example, Level, Operator, Trigger, register

if TYPE_CHECKING:
    from ..runtime import nodes as N
    from .compiler import Compiler


class RepetitionSpec(Strict):
    role: RoleName = "any"
    times: int = Field(3, ge=2)
    similarity: float = Field(90.0, ge=50, le=100)
    min_chars: int = Field(4, ge=1)


def _compile(cx: Compiler, v: RepetitionSpec, p: CPath) -> N.CNode:
    from ..runtime import nodes as N
    from .compiler import role_or_none

    return N.CRepetition(role_or_none(v.role), v.times, v.similarity, v.min_chars)


register(
    Operator(
        name="repetition",
        level=Level.CALL,
        spec=RepetitionSpec,
        trigger=Trigger.EVERY_UTTERANCE,
        summary="the same sentence (fuzzy-equal) said `times` times by a role",
        example=Example(
            {"repetition": {"times": 2}},
            found=[("a", 0, 1, "请您耐心等待"), ("a", 2, 3, "请您耐心等待")],
            missing=[("a", 0, 1, "请您耐心等待"), ("a", 2, 3, "好的好的谢谢")],
        ),
        call=_compile,
    ),
    __name__,
)
