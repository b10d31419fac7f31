"""``stages``: every stage of a script occurs, in order (each stage in the utterance of the
one before it or later)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from ..lang.base import Strict
from .registry import CPath, Example, Level, Operator, Trigger, register

if TYPE_CHECKING:
    from ..lang.schema import Cond
    from ..runtime import nodes as N
    from .compiler import Compiler


class StageSpec(Strict):
    name: str
    match: Cond


class StagesSpec(Strict):
    stages: list[StageSpec] = Field(min_length=2)
    in_order: bool = True


def _compile(cx: Compiler, v: StagesSpec, p: CPath) -> N.CNode:
    from ..runtime import nodes as N

    return N.CStages(
        [s.name for s in v.stages],
        [cx.utt_only(s.match, (*p, "stages", i, "match")) for i, s in enumerate(v.stages)],
        v.in_order,
    )


register(
    Operator(
        name="stages",
        level=Level.CALL,
        spec=StagesSpec,
        models=(StageSpec,),
        trigger=Trigger.CHILDREN,
        summary="every stage (`name`, `match`) occurs, each in or after the utterance of the one "
        "before it (`in_order`, default) or in any order",
        example=Example(
            {
                "stages": {
                    "stages": [
                        {"name": "问候", "match": {"keyword": ["您好"]}},
                        {"name": "结束", "match": {"keyword": ["再见"]}},
                    ]
                }
            },
            found=[("a", 0, 1, "您好"), ("a", 2, 3, "再见")],
            missing=[("a", 0, 1, "再见"), ("a", 2, 3, "您好")],
        ),
        call=_compile,
        children=lambda v: [(f".stages[{i}]", s.match) for i, s in enumerate(v.stages)],
    ),
    __name__,
)
