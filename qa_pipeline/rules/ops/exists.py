"""``exists``: an utterance condition found anywhere in the scope (once per matching
utterance): combines things said in different utterances under ``all``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .registry import CPath, Example, Level, Operator, Trigger, register

if TYPE_CHECKING:
    from ..runtime import nodes as N
    from .compiler import Compiler


def _compile(cx: Compiler, v: Any, p: CPath) -> N.CNode:
    from ..runtime import nodes as N

    return N.CExists(cx.utt_only(v, p), cx.label(v))


register(
    Operator(
        name="exists",
        level=Level.CALL,
        spec="Cond",
        trigger=Trigger.CHILDREN,
        summary="an utterance condition found in some utterance of the scope",
        example=Example(
            {"all": [{"exists": {"keyword": ["您好"]}}, {"exists": {"keyword": ["工号"]}}]},
            found=[("a", 0, 1, "您好"), ("a", 2, 3, "我的工号是一二三")],
            missing=[("a", 0, 1, "您好")],
        ),
        call=_compile,
        children=lambda v: [(".exists", v)],
    ),
    __name__,
)
