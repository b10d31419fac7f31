"""``all`` / ``any`` / ``not``: combine conditions. Compiled by the compiler itself at the
level of their sub-conditions (one utterance, call metadata, or the whole call)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .registry import Example, Level, Operator, Trigger, register

if TYPE_CHECKING:
    from ..lang.schema import Cond


def _each(name: str) -> Callable[[Any], list[tuple[str, Cond]]]:
    return lambda v: [(f".{name}[{i}]", k) for i, k in enumerate(v)]


def _first(v: Any, label: Callable[[Cond], str]) -> str:
    return label(v[0])


register(
    Operator(
        name="all",
        level=Level.NESTED,
        spec="list[Cond]",
        field_args={"min_length": 1},
        trigger=Trigger.CHILDREN,
        summary="every sub-condition holds (on one utterance for utterance conditions)",
        example=Example(
            {"all": [{"keyword": ["您好"]}, {"role": "agent"}]},
            found=[("a", 0, 1, "您好")],
            missing=[("c", 0, 1, "您好")],
        ),
        children=_each("all"),
        label=_first,
    ),
    __name__,
)
register(
    Operator(
        name="any",
        level=Level.NESTED,
        spec="list[Cond]",
        field_args={"min_length": 1},
        trigger=Trigger.CHILDREN,
        summary="at least one sub-condition holds",
        example=Example(
            {"any": [{"keyword": ["您好"]}, {"keyword": ["你好"]}]},
            found=[("a", 0, 1, "你好")],
            missing=[("a", 0, 1, "再见")],
        ),
        children=_each("any"),
        label=_first,
    ),
    __name__,
)
register(
    Operator(
        name="not",
        level=Level.NESTED,
        spec="Cond",
        trigger=Trigger.CHILDREN,
        summary="the sub-condition does not hold (a call condition: was never found)",
        example=Example(
            {"not": {"exists": {"keyword": ["投诉"]}}},
            found=[("c", 0, 1, "谢谢")],
            missing=[("c", 0, 1, "我要投诉")],
        ),
        children=lambda v: [(".not", v)],
        label=lambda v, label: "非（" + label(v) + "）",
    ),
    __name__,
)
