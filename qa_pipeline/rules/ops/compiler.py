"""Turn validated rule specs into nodes (see :mod:`.nodes`)."""

from __future__ import annotations

from typing import Any

from ...errors import QAError
from ...messages import Role
from ..lang.labels import label
from ..lang.registry import REGISTRY, Level, Operator, Trigger, of_level, trigger_of
from ..lang.schema import Cond, RuleSpec, Settings
from ..runtime import nodes as N
from ..runtime.plan import Rule
from ..runtime.textindex import TextIndex

STATIC, UTT, CALL = Level.STATIC, Level.UTTERANCE, Level.CALL


def _static_ops() -> frozenset[str]:
    return of_level(Level.STATIC)


class CompileError(QAError, ValueError):
    """A problem found while compiling; ``path`` is where in the rule it is."""

    def __init__(self, path: tuple[str | int, ...], msg: str) -> None:
        super().__init__(msg)
        self.path = path


def role_or_none(name: str) -> Role | None:
    return None if name == "any" else Role(name)


def level(c: Cond) -> Level:
    """The level a condition works at: the highest of its operators'."""
    lv = STATIC
    for op, v in c.operators():
        olv = REGISTRY[op].level
        if olv == CALL:
            return CALL
        if olv == UTT:
            lv = UTT
        elif olv == Level.NESTED:
            for _, k in REGISTRY[op].children(v):
                lv = max(lv, level(k))
    return lv


def _check_trigger(op: Operator, spec: Any, node: Any, path: tuple[str | int, ...]) -> None:
    """The node does what its operator declares (see :class:`.registry.Trigger`)."""
    want = trigger_of(op, spec)
    trig = node.trigger
    if want == Trigger.CHILDREN:
        return
    if isinstance(node, N.UNode):
        ok = (trig is None) if want == Trigger.EVERY_UTTERANCE else want == Trigger.PHRASES
        ok = ok and (want != Trigger.PHRASES or trig is None or len(trig) > 0)
    elif want == Trigger.NO_UTTERANCE:
        ok = not node.wants_utts
    elif want == Trigger.EVERY_UTTERANCE:
        ok = node.wants_utts and trig is None
    else:  # PHRASES
        ok = node.wants_utts and trig is not None and len(trig) > 0
    if not ok:
        raise CompileError(path, f"operator {op.name}: its node does not match trigger {want.name}")


class Compiler:
    def __init__(self, ix: TextIndex, settings: Settings) -> None:
        self.ix = ix
        self.settings = settings
        self.statics: list[N.SNode] = []
        self.holiday_thresholds: set[float] = set()
        self._slot = 0
        self._deferred = False
        self._deps: list[str] = []

    # ------------------------------------------------------------------ static

    def _reg(self, s: N.SNode) -> N.SNode:
        s.slot = len(self.statics)
        self.statics.append(s)
        return s

    def static(self, c: Cond) -> N.SNode:
        parts: list[N.SNode] = []
        for op, v in c.operators():
            if op in ("all", "any"):
                kids = [self.static(k) for k in v]
                parts.append(N.SAll(kids) if op == "all" else N.SAny(kids))
            elif op == "not":
                parts.append(N.SNot(self.static(v)))
            else:
                compile_ = REGISTRY[op].static
                assert compile_ is not None
                parts.append(compile_(self, v))
        node = parts[0] if len(parts) == 1 else N.SAll(parts)
        return self._reg(node)

    # ------------------------------------------------------------------ operator helpers

    def atoms(self, phrases: list[str], path: tuple[str | int, ...]) -> list[int]:
        """The exact-phrase atoms of ``phrases`` (an error names the phrase's place)."""
        out = []
        for i, p in enumerate(phrases):
            try:
                out.append(self.ix.keyword(p))
            except ValueError as e:
                raise CompileError((*path, i), str(e)) from e
        return out

    def defer(self, deferred: bool) -> None:
        """The rule needs the end of the call (``last_turns``, index -1)."""
        self._deferred |= deferred

    def depends_on(self, rule_ids: list[str]) -> None:
        self._deps.extend(rule_ids)

    def label(self, c: Cond) -> str:
        return label(c)

    # ------------------------------------------------------------------ utterance

    def utt(self, c: Cond, path: tuple[str | int, ...] = ()) -> N.UNode:
        parts: list[N.UNode] = []
        for op, v in c.operators():
            p = (*path, op)
            o = REGISTRY[op]
            if op in ("all", "any"):
                kids = [self.utt(k, (*p, i)) for i, k in enumerate(v)]
                parts.append(N.UAll(kids) if op == "all" else N.UAny(kids))
            elif op == "not":
                parts.append(N.UNot(self.utt(v, p)))
            elif o.level == STATIC:
                parts.append(N.UStatic(self.static(Cond.model_validate({op: v}))))
            elif o.level == UTT:
                assert o.utt is not None
                node = o.utt(self, v, p)
                if node is not None:
                    _check_trigger(o, v, node, p)
                    parts.append(node)
            else:  # pragma: no cover - level() keeps call ops out
                raise CompileError(p, f"{op} is not an utterance condition")
        if not parts:  # role: any
            return N.UAll([])
        node = parts[0] if len(parts) == 1 else N.UAll(parts)
        self._deferred |= node.deferred
        return node

    def utt_only(self, c: Cond, path: tuple[str | int, ...]) -> N.UNode:
        if level(c) == CALL:
            raise CompileError(path, "must be an utterance condition (phrases, role, position)")
        return self.utt(c, path)

    # ------------------------------------------------------------------ call

    def _slotted(self, n: N.CNode) -> N.CNode:
        n.slot = self._slot
        self._slot += 1
        return n

    def call(self, c: Cond, path: tuple[str | int, ...] = ()) -> N.CNode:
        lv = level(c)
        if lv == STATIC:
            return self._slotted(N.CStatic(self.static(c), label(c)))
        if lv == UTT:
            return self._slotted(N.CExists(self.utt(c, path), label(c)))
        parts: list[N.CNode] = []
        for op, v in c.operators():
            p = (*path, op)
            o = REGISTRY[op]
            if o.level in (STATIC, UTT):
                parts.append(self.call(Cond.model_validate({op: v}), path))
            elif op == "all":
                parts.append(
                    self._slotted(N.CAll([self.call(k, (*p, i)) for i, k in enumerate(v)]))
                )
            elif op == "any":
                parts.append(
                    self._slotted(N.CAny([self.call(k, (*p, i)) for i, k in enumerate(v)]))
                )
            elif op == "not":
                parts.append(self._slotted(N.CNot(self.call(v, p), label(v))))
            else:
                assert o.call is not None
                node = o.call(self, v, p)
                _check_trigger(o, v, node, p)
                parts.append(self._slotted(node))
        if len(parts) == 1:
            return parts[0]
        return self._slotted(N.CAll(parts))

    # ------------------------------------------------------------------ rule

    def rule(self, spec: RuleSpec, index: int) -> Rule:
        """The runtime's rule: the spec's conditions compiled into nodes."""
        self._slot = 0
        self._deferred = False
        self._deps = []
        static_when: N.SNode | None = None
        when: N.CNode | None = None
        if spec.when is not None:
            if level(spec.when) == STATIC:
                static_when = self.static(spec.when)
            else:
                when = self.call(spec.when, ("when",))
        mode = "require" if spec.require is not None else "forbid"
        cond = spec.require if spec.require is not None else spec.forbid
        assert cond is not None
        body = self.call(cond, (mode,))
        return Rule(
            spec,
            index,
            body,
            when,
            static_when,
            self._slot,
            self._deferred,
            tuple(self._deps),
            label(cond),
        )
