"""``role``: who said the utterance."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...messages import Role
from ..lang.base import RoleName
from .registry import CPath, Example, Issue, Level, LintCtx, Operator, Trigger, register

if TYPE_CHECKING:
    from ..runtime import nodes as N
    from .compiler import Compiler


def _compile(cx: Compiler, v: Any, p: CPath) -> N.UNode | None:
    from ..runtime import nodes as N

    return None if v == "any" else N.URole(Role(v))


def _lint(cx: LintCtx, v: Any) -> list[Issue]:
    sc = cx.scope
    if (
        cx.part == "body"
        and sc.role != "any"
        and v not in (sc.role, "any")
        and ".not" not in cx.path
    ):
        return [("error", f"{cx.where}: role {v} but the scope only lets {sc.role} speech through")]
    return []


register(
    Operator(
        name="role",
        level=Level.UTTERANCE,
        spec=RoleName,
        trigger=Trigger.EVERY_UTTERANCE,
        summary="the utterance is the agent's / the customer's",
        example=Example(
            {"role": "customer"}, found=[("c", 0, 1, "喂")], missing=[("a", 0, 1, "喂")]
        ),
        utt=_compile,
        label=lambda v, label: {"agent": "坐席发言", "customer": "客户发言"}.get(v, "发言"),
        lint=_lint,
    ),
    __name__,
)
