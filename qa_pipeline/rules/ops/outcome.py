"""How the call ended and what other rules decided: ``hangup`` and ``verdicts``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ...messages import Role
from ..lang.base import Strict
from .registry import CPath, Example, Level, Operator, Trigger, register

if TYPE_CHECKING:
    from ..runtime import nodes as N
    from .compiler import Compiler


class HangupSpec(Strict):
    first: Literal["agent", "customer"]
    margin: float = Field(0.3, ge=0)


def _hangup(cx: Compiler, v: HangupSpec, p: CPath) -> N.CNode:
    from ..runtime import nodes as N

    return N.CHangup(Role(v.first), v.margin)


register(
    Operator(
        name="hangup",
        level=Level.CALL,
        spec=HangupSpec,
        trigger=Trigger.NO_UTTERANCE,
        summary="`first` hung up first (channel ends more than `margin` s apart)",
        example=Example({"hangup": {"first": "agent"}}),
        call=_hangup,
    ),
    __name__,
)


class VerdictsSpec(Strict):
    """Other rules' verdicts: found when every listed rule passed (``not_applicable``
    counts as passed: 'apology when due')."""

    passed: list[str] = Field(min_length=1)


def _verdicts(cx: Compiler, v: Any, p: CPath) -> N.CNode:
    from ..runtime import nodes as N

    cx.depends_on(v.passed)
    return N.CVerdicts(list(v.passed))


register(
    Operator(
        name="verdicts",
        level=Level.CALL,
        spec=VerdictsSpec,
        shorthand=lambda v: {"passed": v} if isinstance(v, list) else v,
        trigger=Trigger.NO_UTTERANCE,
        summary="every rule listed in `passed` passed (or was not applicable)",
        example=Example({"verdicts": ["R-OTHER"]}),
        call=_verdicts,
    ),
    __name__,
)
