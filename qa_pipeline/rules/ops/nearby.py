"""Phrases near each other in one utterance: ``proximity`` (a near b) and ``negation``
(a phrase with a negator just before it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from ..lang.base import Phrases, Strict, _nonempty_phrases
from .registry import CPath, Example, Level, Operator, Trigger, register

if TYPE_CHECKING:
    from ..runtime import nodes as N
    from .compiler import Compiler


class ProximitySpec(Strict):
    a: Phrases
    b: Phrases
    within: int = Field(10, ge=0)
    ordered: bool = False

    @field_validator("a", "b")
    @classmethod
    def _ne(cls, v: list[str]) -> list[str]:
        return _nonempty_phrases(v)


def _proximity(cx: Compiler, v: ProximitySpec, p: CPath) -> N.UNode:
    from ..runtime import nodes as N

    return N.UProximity(cx.atoms(v.a, (*p, "a")), cx.atoms(v.b, (*p, "b")), v.within, v.ordered)


register(
    Operator(
        name="proximity",
        level=Level.UTTERANCE,
        spec=ProximitySpec,
        trigger=Trigger.PHRASES,
        summary="a phrase of `a` within N characters of one of `b` (`ordered`: a first)",
        example=Example(
            {"proximity": {"a": ["退款"], "b": ["不行"], "within": 4}},
            found=[("a", 0, 1, "退款不行")],
            missing=[("a", 0, 1, "退款已经办好了，没有什么不行")],
        ),
        utt=_proximity,
    ),
    __name__,
)


DEFAULT_NEGATORS = ["不", "没", "没有", "别", "不要", "无法", "未", "不能", "不会", "不用"]


class NegationSpec(Strict):
    phrases: Phrases
    within: int = Field(3, ge=1)
    negators: Phrases = Field(default_factory=lambda: list(DEFAULT_NEGATORS))

    @field_validator("phrases", "negators")
    @classmethod
    def _ne(cls, v: list[str]) -> list[str]:
        return _nonempty_phrases(v)


def _negation(cx: Compiler, v: NegationSpec, p: CPath) -> N.UNode:
    from ..runtime import nodes as N

    return N.UNegation(
        cx.atoms(v.phrases, (*p, "phrases")), cx.atoms(v.negators, (*p, "negators")), v.within
    )


register(
    Operator(
        name="negation",
        level=Level.UTTERANCE,
        spec=NegationSpec,
        trigger=Trigger.PHRASES,
        summary="a phrase negated (a negator such as 不/没 within N characters before it)",
        example=Example(
            {"negation": {"phrases": ["清楚"]}},
            found=[("a", 0, 1, "我不清楚")],
            missing=[("a", 0, 1, "我很清楚")],
        ),
        utt=_negation,
    ),
    __name__,
)
