"""Turn validated rule specs into nodes (see :mod:`.nodes`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...messages import Direction, Role, Severity
from ..lang.schema import Cond, RuleSpec, Settings, parse_range
from ..runtime import nodes as N
from ..runtime.textindex import TextIndex

STATIC_OPS = {"direction", "time_of_day", "calendar", "start_known"}
UTT_OPS = {
    "role",
    "keyword",
    "regex",
    "fuzzy",
    "similar",
    "position",
    "proximity",
    "negation",
    "entity",
    "holiday_greeting",
}
CALL_OPS = {
    "exists",
    "sequence",
    "response_gap",
    "silence",
    "hold",
    "talk_over",
    "speech_rate",
    "volume",
    "duration",
    "utterance_count",
    "repetition",
    "count",
    "share",
    "stages",
    "hangup",
    "verdicts",
}
STATIC, UTT, CALL = 0, 1, 2


class CompileError(ValueError):
    """A problem found while compiling; ``path`` is where in the rule it is."""

    def __init__(self, path: tuple[str | int, ...], msg: str) -> None:
        super().__init__(msg)
        self.path = path


def _role(name: str) -> Role | None:
    return None if name == "any" else Role(name)


def level(c: Cond) -> int:
    lv = STATIC
    for op, v in c.operators():
        if op in CALL_OPS:
            return CALL
        if op in UTT_OPS:
            lv = UTT
        elif op in ("all", "any"):
            lv = max(lv, *(level(k) for k in v))
        elif op == "not":
            lv = max(lv, level(v))
    return lv


def label(c: Cond) -> str:
    """A short human label for a condition (its first phrases)."""
    ops = c.operators()
    ops.sort(key=lambda p: p[0] == "role")  # phrases say more than the role
    for op, v in ops:
        if op == "keyword":
            ph = v.any or v.all or v.none or v.of or []
            return "/".join(ph[:3]) + ("…" if len(ph) > 3 else "")
        if op == "fuzzy":
            return "/".join(v.phrases[:3]) + ("…" if len(v.phrases) > 3 else "")
        if op == "similar":
            return v.examples[0]
        if op == "regex":
            return v.pattern
        if op in ("all", "any"):
            return label(v[0])
        if op == "not":
            return "非（" + label(v) + "）"
        if op == "role":
            return {"agent": "坐席发言", "customer": "客户发言"}.get(v, "发言")
        if op == "entity":
            return v.kind
        if op == "holiday_greeting":
            return "节日问候语"
    return c.operators()[0][0]


@dataclass(eq=False)
class CompiledRule:
    spec: RuleSpec
    index: int
    mode: str  # "require" | "forbid"
    body: N.CNode
    when: N.CNode | None
    static_when: N.SNode | None
    roles: frozenset[Role] | None
    direction: Direction | None
    slots: int
    deferred: bool
    trigger: frozenset[int] | None
    utt_roles: frozenset[Role]
    wants_timeline: bool
    wants_clock: bool
    # per role: the atoms one of which an utterance of that role must contain to matter
    # to the rule (None: every utterance); roles the rule never sees are absent
    triggers: dict[Role, frozenset[int] | None] = field(default_factory=dict)
    deps: tuple[str, ...] = ()
    label: str = ""
    tl_interest: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    # derived (plain attributes: read for every utterance)
    require: bool = field(init=False)
    windowed: bool = field(init=False)  # a first_* scope window
    body_utts: bool = field(init=False)  # the body sees utterances as they arrive

    def __post_init__(self) -> None:
        sc = self.spec.scope
        self.require = self.mode == "require"
        self.windowed = sc.first_seconds is not None or sc.first_turns is not None
        self.body_utts = self.body.wants_utts and not self.deferred

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def severity(self) -> Severity:
        return self.spec.severity

    @property
    def weight(self) -> float:
        return self.spec.weight


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
            if op == "direction":
                parts.append(N.SDirection(Direction(v)))
            elif op == "start_known":
                parts.append(N.SStartKnown(bool(v)))
            elif op == "time_of_day":
                parts.append(N.STimeOfDay([parse_range(r) for r in v.between]))
            elif op == "calendar":
                parts.append(N.SCalendar(v.holiday, v.weekday, v.dates))
            elif op == "all":
                parts.append(N.SAll([self.static(k) for k in v]))
            elif op == "any":
                parts.append(N.SAny([self.static(k) for k in v]))
            elif op == "not":
                parts.append(N.SNot(self.static(v)))
        node = parts[0] if len(parts) == 1 else N.SAll(parts)
        return self._reg(node)

    # ------------------------------------------------------------------ utterance

    def _kw(self, phrases: list[str], path: tuple[str | int, ...]) -> list[int]:
        out = []
        for i, p in enumerate(phrases):
            try:
                out.append(self.ix.keyword(p))
            except ValueError as e:
                raise CompileError((*path, i), str(e)) from e
        return out

    def utt(self, c: Cond, path: tuple[str | int, ...] = ()) -> N.UNode:
        parts: list[N.UNode] = []
        for op, v in c.operators():
            p = (*path, op)
            if op in STATIC_OPS:
                parts.append(N.UStatic(self.static(Cond.model_validate({op: v}))))
            elif op == "role":
                r = _role(v)
                if r is not None:
                    parts.append(N.URole(r))
            elif op == "keyword":
                if v.any is not None:
                    parts.append(N.UKeywordAny(self._kw(v.any, (*p, "any")), v.at))
                elif v.all is not None:
                    parts.append(N.UKeywordAll(self._kw(v.all, (*p, "all"))))
                elif v.none is not None:
                    parts.append(N.UKeywordNone(self._kw(v.none, (*p, "none"))))
                else:
                    parts.append(N.UKeywordAtLeast(self._kw(v.of, (*p, "of")), v.at_least))
            elif op == "fuzzy":
                atoms = []
                for i, ph in enumerate(v.phrases):
                    try:
                        atoms.append(self.ix.fuzzy(ph, v.threshold))
                    except ValueError as e:
                        raise CompileError((*p, "phrases", i), str(e)) from e
                parts.append(N.ULazy(self.ix, atoms))
            elif op == "regex":
                parts.append(N.ULazy(self.ix, [self.ix.regex(v.pattern, v.exclude)]))
            elif op == "similar":
                parts.append(N.ULazy(self.ix, [self.ix.similar(v.examples, v.threshold)]))
            elif op == "entity":
                parts.append(N.ULazy(self.ix, [self.ix.entity(v.kind)]))
            elif op == "holiday_greeting":
                self.holiday_thresholds.add(v.threshold)
                parts.append(N.UHolidayGreeting(self.ix, v.threshold))
            elif op == "position":
                pos = N.UPosition(
                    v.first_seconds, v.last_seconds, v.first_turns, v.last_turns, v.index
                )
                self._deferred |= pos.deferred
                parts.append(pos)
            elif op == "proximity":
                parts.append(
                    N.UProximity(
                        self._kw(v.a, (*p, "a")), self._kw(v.b, (*p, "b")), v.within, v.ordered
                    )
                )
            elif op == "negation":
                parts.append(
                    N.UNegation(
                        self._kw(v.phrases, (*p, "phrases")),
                        self._kw(v.negators, (*p, "negators")),
                        v.within,
                    )
                )
            elif op == "all":
                parts.append(N.UAll([self.utt(k, (*p, i)) for i, k in enumerate(v)]))
            elif op == "any":
                parts.append(N.UAny([self.utt(k, (*p, i)) for i, k in enumerate(v)]))
            elif op == "not":
                parts.append(N.UNot(self.utt(v, p)))
            else:  # pragma: no cover - level() keeps call ops out
                raise CompileError(p, f"{op} is not an utterance condition")
        if not parts:  # role: any
            return N.UAll([])
        node = parts[0] if len(parts) == 1 else N.UAll(parts)
        self._deferred |= node.deferred
        return node

    def _utt_only(self, c: Cond, path: tuple[str | int, ...]) -> N.UNode:
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
            if op in STATIC_OPS or op in UTT_OPS:
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
                parts.append(self._slotted(self._call_leaf(op, v, p)))
        if len(parts) == 1:
            return parts[0]
        return self._slotted(N.CAll(parts))

    def _call_leaf(self, op: str, v: Any, p: tuple[str | int, ...]) -> N.CNode:
        if op == "exists":
            return N.CExists(self._utt_only(v, p), label(v))
        if op == "sequence":
            return N.CSequence(
                self._utt_only(v.first, (*p, "first")),
                self._utt_only(v.then, (*p, "then")),
                v.within_turns,
                v.within_seconds,
                _role(v.turn_role),
                v.missing,
                label(v.then),
            )
        if op == "response_gap":
            return N.CResponseGap(v.over)
        if op == "silence":
            ex = self._utt_only(v.except_after, (*p, "except_after")) if v.except_after else None
            return N.CSilence(v.over, v.total_over, v.count_from, ex)
        if op == "hold":
            return N.CHold(
                v.min_seconds,
                self._utt_only(v.notice, (*p, "notice")),
                self._utt_only(v.thanks, (*p, "thanks")),
                v.max_customer_speech,
            )
        if op == "talk_over":
            return N.CTalkOver(v.min_overlap_ms, Role(v.by))
        if op in ("speech_rate", "volume", "duration", "utterance_count"):
            return N.CMetric(op, _role(v.role), v.over, v.under, v.min_speech_seconds)
        if op == "repetition":
            return N.CRepetition(_role(v.role), v.times, v.similarity, v.min_chars)
        if op == "count":
            return N.CCount(self._utt_only(v.of, (*p, "of")), v.at_least, v.over, label(v.of))
        if op == "share":
            return N.CShare(
                self._kw(v.of, (*p, "of")),
                self._kw(v.among, (*p, "among")),
                v.over,
                v.under,
                v.min_total,
                "/".join(v.of),
            )
        if op == "stages":
            return N.CStages(
                [s.name for s in v.stages],
                [
                    self._utt_only(s.match, (*p, "stages", i, "match"))
                    for i, s in enumerate(v.stages)
                ],
                v.in_order,
            )
        if op == "hangup":
            return N.CHangup(Role(v.first), v.margin)
        if op == "verdicts":
            self._deps.extend(v.passed)
            return N.CVerdicts(list(v.passed))
        raise CompileError(p, f"unknown operator {op}")  # pragma: no cover

    # ------------------------------------------------------------------ rule

    def rule(self, spec: RuleSpec, index: int) -> CompiledRule:
        self._slot = 0
        self._deferred = False
        self._deps = []
        sc = spec.scope
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
        deferred = self._deferred or sc.last_seconds is not None or sc.last_turns is not None
        roles = None if sc.role == "any" else frozenset({Role(sc.role)})
        all_roles = frozenset(Role)
        utt_roles: set[Role] = set()
        trig: list[frozenset[int] | None] = []
        by_role: dict[Role, list[frozenset[int] | None]] = {r: [] for r in Role}
        if when is not None and when.wants_utts:
            utt_roles |= all_roles
            trig.append(when.trigger)
            for r in Role:
                by_role[r].append(when.trigger)
        if body.wants_utts and not deferred:
            utt_roles |= roles or all_roles
            trig.append(body.trigger)
            for r in roles or all_roles:
                by_role[r].append(body.trigger)
        return CompiledRule(
            spec=spec,
            index=index,
            mode=mode,
            body=body,
            when=when,
            static_when=static_when,
            roles=roles,
            direction=sc.direction,
            slots=self._slot,
            deferred=deferred,
            trigger=N._union(trig),
            triggers={r: N._union(t) for r, t in by_role.items() if r in utt_roles},
            utt_roles=frozenset(utt_roles),
            wants_timeline=body.wants_timeline or bool(when and when.wants_timeline),
            wants_clock=body.wants_clock or bool(when and when.wants_clock),
            deps=tuple(self._deps),
            label=label(cond),
            tl_interest=_merge_interest(body, when),
        )


def _merge_interest(*nodes: N.CNode | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for n in nodes:
        if n is not None and n.wants_timeline:
            for kind, v in n.tl_interest().items():
                out[kind] = min(v, out.get(kind, v))
    return out
