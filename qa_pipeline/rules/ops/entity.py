"""``entity``: a phone number, ID number, bank card or number in the utterance."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ..lang.base import Strict
from .registry import CPath, Example, Level, Operator, Trigger, register

if TYPE_CHECKING:
    from ..runtime import nodes as N
    from .compiler import Compiler

EntityKind = Literal["phone", "mobile", "id_number", "bank_card", "number"]


class EntitySpec(Strict):
    kind: EntityKind


def _compile(cx: Compiler, v: EntitySpec, p: CPath) -> N.UNode:
    from ..runtime import nodes as N

    return N.ULazy(cx.ix, [cx.ix.entity(v.kind)])


register(
    Operator(
        name="entity",
        level=Level.UTTERANCE,
        spec=EntitySpec,
        shorthand=lambda v: {"kind": v} if isinstance(v, str) else v,
        trigger=Trigger.PHRASES,
        summary="a `phone`, `mobile`, `id_number`, `bank_card` or `number` is said",
        example=Example(
            {"entity": "mobile"},
            found=[("a", 0, 1, "请拨打13812345678")],
            missing=[("a", 0, 1, "请稍等")],
        ),
        utt=_compile,
        label=lambda v, label: v.kind,
    ),
    __name__,
)
