"""Compiled conditions: the objects the evaluator runs.

Three kinds of node, decided when a pack is compiled:

* **static** (:class:`SNode`): call metadata only (direction, time of day, calendar);
  evaluated once when the call starts.
* **utterance** (:class:`UNode`): true or false for one utterance, with the matched span.
  ``trigger`` is the set of exact-phrase atoms one of which must occur for the node to
  match (``None``: unknown), so the evaluator only runs a rule on utterances that can
  matter to it. ``deferred`` nodes need the end of the call (``last_turns``, index -1).
* **call** (:class:`CNode`): stateful over the call; yields *events* (something found,
  with evidence) as utterances, timeline events or the clock arrive, and at ``close``.

Node objects are immutable and shared by all calls; per-call state lives in the rule run's
``st`` list at the node's ``slot``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any, Final

from rapidfuzz import fuzz

from ...messages import CallInfo, Direction, Evidence, Role, Utterance
from .textindex import Analysis, Span, TextIndex

#: something a node found: the evidence and a detail for the finding
Found = tuple[Evidence, str]
NO_ITEMS: Final[list[Any]] = []  # the shared empty list (engine, timeline): never appended to
_NO_SPAN: Final = (-1, -1)  # memoised "no match" (spans never start below 0)
_WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# float("inf") as a constant: compiled code parses the string on every call (engine, timeline)
INF: Final = float("inf")


class UttCtx:
    """One utterance as the rules see it."""

    __slots__ = (
        "_whole",
        "a",
        "call_end",
        "channel",
        "ctx",
        "end",
        "n",
        "role",
        "role_total",
        "start",
        "turn",
        "u",
    )

    def __init__(
        self,
        u: Utterance,
        a: Analysis,
        turn: int,
        n: int,
        ctx: CallContext,
        role: Role,
        start: float,
        end: float,
    ) -> None:
        self.u = u
        # copied out of the utterance (role, start and end as the evaluator read them):
        # read by every rule and the timeline
        self.start = start
        self.end = end
        self.role = role
        self.channel: int = u.channel
        self.a = a
        self.turn = turn  # index among this role's utterances
        self.n = n  # index among all utterances
        self.ctx = ctx  # the call (statics, holiday atoms)
        self.role_total = -1  # known only at call end
        self.call_end = -1.0
        self._whole: Evidence | None = None

    def evidence(self, span: Span | None = None) -> Evidence:
        if span is None:  # the whole utterance: made once (evidence is immutable)
            ev = self._whole
            if ev is None:
                u = self.u
                ev = self._whole = Evidence(
                    start=u.start, end=u.end, utterance_index=u.index, role=u.role, text=u.text
                )
            return ev
        u = self.u
        return Evidence(
            start=u.start,
            end=u.end,
            utterance_index=u.index,
            role=u.role,
            text=u.text,
            matched=self.a.mf[span[0] : span[1]] if span else "",
        )


class TEvent:
    """A timing event the timeline (:mod:`.timeline`) reports to the nodes (plain slotted
    class: thousands are made per second)."""

    __slots__ = ("after", "before", "end", "kind", "other", "role", "seconds", "start")

    def __init__(
        self,
        kind: str,
        start: float,
        end: float,
        seconds: float,
        role: Role | None = None,
        before: UttCtx | None = None,
        after: UttCtx | None = None,
        other: float = 0.0,
    ) -> None:
        self.kind = kind
        self.start = start
        self.end = end
        self.seconds = seconds
        self.role = role
        self.before = before
        self.after = after
        self.other = other

    def evidence(self) -> Evidence:
        x = self.after or self.before
        return Evidence(
            start=self.start,
            end=self.end,
            utterance_index=x.u.index if x else None,
            role=x.role if x else None,
            text=x.u.text if x else "",
        )


# =============================================================================== call context

_ROLE_IX: Final = {Role.AGENT: 0, Role.CUSTOMER: 1, Role.UNKNOWN: 2}


class RoleStats:
    """Running totals of one role (native fields: no number boxed per utterance);
    ``secs`` counts only utterances with text (the speech-rate denominator)."""

    __slots__ = ("chars", "count", "last_end", "level_n", "level_sum", "secs")

    def __init__(self) -> None:
        self.count = 0
        self.chars = 0
        self.secs = 0.0
        self.level_sum = 0.0
        self.level_n = 0
        self.last_end = -INF  # no utterance yet while count == 0


class Stats:
    """Running per-role totals (count, characters, speech seconds, level, last end)."""

    __slots__ = ("roles",)

    def __init__(self) -> None:
        self.roles = [RoleStats(), RoleStats(), RoleStats()]

    def add(self, u: UttCtx, i: int, nchars: int) -> None:
        """Count utterance ``u`` of role index ``i``."""
        rs = self.roles[i]
        rs.count += 1
        if nchars:  # unreadable speech (no text) says nothing about the speech rate
            rs.chars += nchars
            rs.secs += max(u.end - u.start, 0.0)
        level = u.u.level_dbfs
        if level is not None:
            rs.level_sum += level
            rs.level_n += 1
        if u.end > rs.last_end:
            rs.last_end = u.end

    def count(self, role: Role | None) -> int:
        if role is not None:
            return self.roles[_ROLE_IX[role]].count
        return sum(rs.count for rs in self.roles)

    def chars(self, role: Role | None) -> int:
        if role is not None:
            return self.roles[_ROLE_IX[role]].chars
        return sum(rs.chars for rs in self.roles)

    def seconds(self, role: Role | None) -> float:
        if role is not None:
            return self.roles[_ROLE_IX[role]].secs
        return sum(rs.secs for rs in self.roles)

    def level(self, role: Role | None) -> float | None:
        if role is not None:
            rs = self.roles[_ROLE_IX[role]]
            return rs.level_sum / rs.level_n if rs.level_n else None
        n = sum(rs.level_n for rs in self.roles)
        return sum(rs.level_sum for rs in self.roles) / n if n else None

    def last_end(self, role: Role) -> float | None:
        rs = self.roles[_ROLE_IX[role]]
        return rs.last_end if rs.count else None


class CallContext:
    """The call being evaluated as its nodes see it (the evaluator is one): the call
    clock, the end of the call (known at its end), the window grace, the values of the
    pack's static conditions and the holiday greeting atoms for this call, the running
    per-role totals, and the verdicts of rules already decided."""

    def __init__(self) -> None:
        self.clock = 0.0
        self.call_end = 0.0
        self.grace = 0.0
        self.statics: list[bool] = []
        self.holiday_atoms: dict[float, tuple[int, ...]] = {}
        self.stats = Stats()

    def role_ends(self) -> dict[Role, float]:
        """When each role left the call (channel ends, else its last utterance)."""
        raise NotImplementedError

    def rule_ok(self, rule_id: str) -> bool:
        """The rule passed or did not apply (rules decide in dependency order)."""
        raise NotImplementedError

    def rule_unsure(self, rule_id: str) -> bool:
        """The rule's verdict is uncertain."""
        raise NotImplementedError


class RunState:
    """One rule on one call as its nodes see it (the evaluator's rule run is one): the
    call, one state slot per node (``st``, set by the node's ``start``), whether the
    nodes' events become findings (forbid bodies: nodes skip building evidence nobody
    reads), a reason a node gives for an uncertain verdict, and the two things a node
    tells the scheduler."""

    __slots__ = ("ctx", "events", "st", "unsure_why")

    def __init__(self, ctx: CallContext, slots: int, events: bool) -> None:
        self.ctx = ctx
        self.st: list[Any] = [None] * slots
        self.events = events
        self.unsure_why = ""

    def every_utterance(self, on: bool) -> None:
        """The rule needs every utterance of the call for now (e.g. a sequence waiting for
        its follow-up counts turns), not only those that hit its phrases."""
        raise NotImplementedError

    def trigger_retired(self) -> None:
        """A part of the rule's trigger no longer matters (e.g. a stage was seen): its
        lazy phrases need not be computed for later utterances (see
        :meth:`CNode.part_open`)."""
        raise NotImplementedError


# =============================================================================== static


class SNode:
    """A condition on call metadata; ``eval`` runs once per call."""

    slot = -1

    def eval(self, call: CallInfo, holidays: Sequence[Any]) -> bool:
        raise NotImplementedError


class SDirection(SNode):
    def __init__(self, direction: Direction) -> None:
        self.direction = direction

    def eval(self, call: CallInfo, holidays: Sequence[Any]) -> bool:
        return call.direction == self.direction


class SStartKnown(SNode):
    def __init__(self, known: bool) -> None:
        self.known = known

    def eval(self, call: CallInfo, holidays: Sequence[Any]) -> bool:
        return (call.started_at is not None) == self.known


class STimeOfDay(SNode):
    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        self.ranges = ranges

    def eval(self, call: CallInfo, holidays: Sequence[Any]) -> bool:
        if call.started_at is None:
            return False
        m = call.started_at.hour * 60 + call.started_at.minute
        return any((a <= m < b) if a <= b else (m >= a or m < b) for a, b in self.ranges)


class SCalendar(SNode):
    def __init__(
        self, holiday: bool | None, weekday: list[str] | None, dates: list[dt.date] | None
    ) -> None:
        self.holiday = holiday
        self.weekday = weekday
        self.dates = dates

    def eval(self, call: CallInfo, holidays: Sequence[Any]) -> bool:
        if call.started_at is None:
            return False
        day = call.started_at.date()
        if self.holiday is not None:
            is_h = any(h.covers(day) for h in holidays)
            if is_h != self.holiday:
                return False
        if self.weekday is not None and _WEEKDAYS[day.weekday()] not in self.weekday:
            return False
        return not (self.dates is not None and day not in self.dates)


class SAll(SNode):
    def __init__(self, kids: list[SNode]) -> None:
        self.kids = kids

    def eval(self, call: CallInfo, holidays: Sequence[Any]) -> bool:
        return all(k.eval(call, holidays) for k in self.kids)


class SAny(SNode):
    def __init__(self, kids: list[SNode]) -> None:
        self.kids = kids

    def eval(self, call: CallInfo, holidays: Sequence[Any]) -> bool:
        return any(k.eval(call, holidays) for k in self.kids)


class SNot(SNode):
    def __init__(self, kid: SNode) -> None:
        self.kid = kid

    def eval(self, call: CallInfo, holidays: Sequence[Any]) -> bool:
        return not self.kid.eval(call, holidays)


# =============================================================================== utterance


class UNode:
    trigger: frozenset[int] | None = None
    deferred = False

    def match(self, x: UttCtx) -> Span | None:
        raise NotImplementedError


def _whole(x: UttCtx) -> Span:
    return (0, len(x.a.mf))


class UStatic(UNode):
    """A static condition used inside an utterance condition (a constant for the call)."""

    def __init__(self, node: SNode) -> None:
        self.node = node

    def match(self, x: UttCtx) -> Span | None:
        return (0, 0) if x.ctx.statics[self.node.slot] else None


class URole(UNode):
    def __init__(self, role: Role) -> None:
        self.role = role

    def match(self, x: UttCtx) -> Span | None:
        return (0, 0) if x.role == self.role else None


class UKeywordAny(UNode):
    def __init__(self, atoms: list[int], at: str = "anywhere") -> None:
        self.atoms = tuple(atoms)
        self.trigger = frozenset(atoms)
        self.at = at

    def match(self, x: UttCtx) -> Span | None:
        spans = x.a.spans
        at = self.at
        n = len(x.a.mf)
        for atom in self.atoms:
            hits = spans.get(atom)
            if hits:
                if at == "anywhere":
                    return hits[0]
                for s in hits:
                    if (
                        (at == "start" and s[0] == 0)
                        or (at == "end" and s[1] == n)
                        or (at == "whole" and s[0] == 0 and s[1] == n)
                    ):
                        return s
        return None


class UKeywordAll(UNode):
    def __init__(self, atoms: list[int]) -> None:
        self.atoms = tuple(atoms)
        self.trigger = frozenset(atoms[:1])

    def match(self, x: UttCtx) -> Span | None:
        spans = x.a.spans
        lo, hi = 1 << 30, 0
        for atom in self.atoms:
            hits = spans.get(atom)
            if not hits:
                return None
            lo, hi = min(lo, hits[0][0]), max(hi, hits[0][1])
        return (lo, hi)


class UKeywordAtLeast(UNode):
    def __init__(self, atoms: list[int], n: int) -> None:
        self.atoms = tuple(atoms)
        self.n = n
        self.trigger = frozenset(atoms)

    def match(self, x: UttCtx) -> Span | None:
        spans = x.a.spans
        found = [spans[a][0] for a in self.atoms if a in spans]
        if len(found) < self.n:
            return None
        return (min(s[0] for s in found), max(s[1] for s in found))


class UKeywordNone(UNode):
    def __init__(self, atoms: list[int]) -> None:
        self.atoms = tuple(atoms)

    def match(self, x: UttCtx) -> Span | None:
        spans = x.a.spans
        for atom in self.atoms:
            if atom in spans:
                return None
        return _whole(x)


class ULazy(UNode):
    """Any of some lazily computed atoms (fuzzy phrases, regex, similar, entity)."""

    def __init__(self, ix: TextIndex, atoms: list[int]) -> None:
        self.ix = ix
        self.atoms = tuple(atoms)
        self.trigger = frozenset(atoms)
        # several phrases: computed together with the shared fuzzy prefilter (same hits)
        self.group: Any = None
        if len(self.atoms) >= 3:
            self.group = "lazy:" + ",".join(map(str, self.atoms))  # a str caches its hash
            ix.set_group(self.group, set(self.atoms))

    def match(self, x: UttCtx) -> Span | None:
        # the answer depends on the text only: memoised on its analysis, by node
        a = x.a
        memo = a.memo
        if memo is None:
            memo = a.memo = {}
        else:
            got = memo.get(self)
            if got is not None:
                return None if got[0] < 0 else got
        g = self.group
        if g is not None:
            self.ix.ensure(a, g)
        spans = a.spans
        done = a.done
        found: Span | None = None
        for atom in self.atoms:
            hits = spans.get(atom)
            if hits is None and not done >> atom & 1:
                hits = self.ix.hits(a, atom)
            if hits:
                found = hits[0]
                break
        memo[self] = _NO_SPAN if found is None else found
        return found


class UFunc(UNode):
    """An utterance test an operator module gives as a Python function of the utterance
    (``fn(x)``: the matched span, or None), for operators whose substance lives outside the
    compiled runtime (a lexicon, a model). It sees every utterance that reaches it, runs at
    Python speed and is never memoised by text (it may read the turn's level and timing)."""

    def __init__(self, fn: Callable[[UttCtx], Span | None]) -> None:
        self.fn = fn

    def match(self, x: UttCtx) -> Span | None:
        return self.fn(x)


class UHolidayGreeting(UNode):
    """The greeting of the holiday the call falls on (atoms chosen per call)."""

    def __init__(self, ix: TextIndex, threshold: float) -> None:
        self.ix = ix
        self.threshold = threshold

    def match(self, x: UttCtx) -> Span | None:
        for atom in x.ctx.holiday_atoms.get(self.threshold, ()):
            hits = self.ix.hits(x.a, atom)
            if hits:
                return hits[0]
        return None


class UPosition(UNode):
    def __init__(
        self,
        first_seconds: float | None,
        last_seconds: float | None,
        first_turns: int | None,
        last_turns: int | None,
        index: list[int] | None,
    ) -> None:
        self.first_seconds = first_seconds
        self.last_seconds = last_seconds
        self.first_turns = first_turns
        self.last_turns = last_turns
        self.index = index
        self.deferred = (
            last_seconds is not None
            or last_turns is not None
            or (index is not None and any(i < 0 for i in index))
        )

    def match(self, x: UttCtx) -> Span | None:
        if self.first_seconds is not None and x.start >= self.first_seconds:
            return None
        if self.first_turns is not None and x.turn >= self.first_turns:
            return None
        if self.last_seconds is not None and (
            x.call_end < 0 or x.end <= x.call_end - self.last_seconds
        ):
            return None
        if self.last_turns is not None and (
            x.role_total < 0 or x.turn < x.role_total - self.last_turns
        ):
            return None
        if self.index is not None:
            ok = False
            for i in self.index:
                if (
                    i >= 0
                    and x.turn == i
                    or i < 0
                    and x.role_total >= 0
                    and x.turn == x.role_total + i
                ):
                    ok = True
            if not ok:
                return None
        return (0, 0)


class UProximity(UNode):
    def __init__(self, a: list[int], b: list[int], within: int, ordered: bool) -> None:
        self.a = tuple(a)
        self.b = tuple(b)
        self.within = within
        self.ordered = ordered
        self.trigger = frozenset(a)

    def match(self, x: UttCtx) -> Span | None:
        spans = x.a.spans
        bs = [s for atom in self.b for s in spans.get(atom, ())]
        if not bs:
            return None
        for atom in self.a:
            for sa in spans.get(atom, ()):
                for sb in bs:
                    if sb[0] >= sa[1]:
                        dist = sb[0] - sa[1]
                    elif self.ordered:
                        continue
                    else:
                        dist = max(sa[0] - sb[1], 0)
                    if dist <= self.within:
                        return (min(sa[0], sb[0]), max(sa[1], sb[1]))
        return None


class UNegation(UNode):
    """A phrase with a negator (不, 没有, …) ending at most ``within`` characters before it."""

    def __init__(self, phrases: list[int], negators: list[int], within: int) -> None:
        self.phrases = tuple(phrases)
        self.negators = tuple(negators)
        self.within = within
        self.trigger = frozenset(phrases)

    def match(self, x: UttCtx) -> Span | None:
        spans = x.a.spans
        negs = [s for atom in self.negators for s in spans.get(atom, ())]
        if not negs:
            return None
        for atom in self.phrases:
            for sp in spans.get(atom, ()):
                for sn in negs:
                    if sn[1] <= sp[0] and sp[0] - sn[1] < self.within:
                        return (sn[0], sp[1])
        return None


class UAll(UNode):
    def __init__(self, kids: list[UNode]) -> None:
        self.kids = kids
        trig = [k.trigger for k in kids if k.trigger is not None]
        self.trigger = min(trig, key=len) if trig else None
        self.deferred = any(k.deferred for k in kids)

    def match(self, x: UttCtx) -> Span | None:
        best: Span | None = None
        for k in self.kids:
            s = k.match(x)
            if s is None:
                return None
            if best is None or (s[1] > s[0] and best[1] <= best[0]):
                best = s
        return best


class UAny(UNode):
    def __init__(self, kids: list[UNode]) -> None:
        self.kids = kids
        trig = [k.trigger for k in kids]
        self.trigger = None if any(t is None for t in trig) else frozenset().union(*trig)  # type: ignore[arg-type]
        self.deferred = any(k.deferred for k in kids)

    def match(self, x: UttCtx) -> Span | None:
        for k in self.kids:
            s = k.match(x)
            if s is not None:
                return s
        return None


class UNot(UNode):
    def __init__(self, kid: UNode) -> None:
        self.kid = kid
        self.deferred = kid.deferred

    def match(self, x: UttCtx) -> Span | None:
        return None if self.kid.match(x) is not None else (0, 0)


# =============================================================================== call level


class CNode:
    """Stateful call-level condition. Methods return new events or ``None``."""

    slot = 0
    wants_utts = False
    wants_timeline = False
    wants_clock = False
    reads_text = False  # a timeline node whose hits rest on what an utterance said
    needs_end = False  # only decided at close
    trigger: frozenset[int] | None = frozenset()

    def tl_interest(self) -> dict[str, float]:
        """Timeline event kinds this node reacts to, with the shortest duration of interest."""
        out: dict[str, float] = {}
        for k in self.kids():
            for kind, v in k.tl_interest().items():
                out[kind] = min(v, out.get(kind, v))
        return out

    def start(self, r: RunState) -> list[Found] | None:
        r.st[self.slot] = False
        return None

    def due(self, r: RunState) -> float:
        """Call-clock time at which ``on_clock`` may decide something (inf: never)."""
        out = INF
        for k in self.kids():
            if k.wants_clock:
                out = min(out, k.due(r))
        return out

    def on_utt(self, r: RunState, x: UttCtx) -> list[Found] | None:
        return None

    def on_tl(self, r: RunState, e: TEvent) -> list[Found] | None:
        return None

    def on_clock(self, r: RunState, now: float) -> list[Found] | None:
        return None

    def close(self, r: RunState) -> list[Found] | None:
        return None

    def found(self, r: RunState) -> bool:
        return bool(r.st[self.slot])

    def detail(self, r: RunState) -> str:
        return ""

    def kids(self) -> list[CNode]:
        return []

    def trigger_parts(self) -> list[tuple[int, frozenset[int]]]:
        """The node's trigger split into parts that can retire separately while the call
        goes on: ``(part, atoms)``, part -1 standing for the whole node (see
        :meth:`part_open`)."""
        assert self.trigger is not None
        return [(-1, self.trigger)]

    def part_open(self, r: RunState, part: int) -> bool:
        """Whether the utterances of trigger part ``part`` (>= 0) can still change this
        node's outcome in run ``r``."""
        return True


def _span_ev(start: float, end: float, detail: str) -> Found:
    return (Evidence(start=start, end=end), detail)


class CStatic(CNode):
    """Call metadata at call level: found at call start when true."""

    def __init__(self, node: SNode, label: str) -> None:
        self.node = node
        self.label = label

    def start(self, r: RunState) -> list[Found] | None:
        ok = bool(r.ctx.statics[self.node.slot])
        r.st[self.slot] = ok
        if ok:
            return [_span_ev(0.0, 0.0, self.label)]
        return None


class CExists(CNode):
    """An utterance condition at call level: found for each matching utterance."""

    wants_utts = True

    def __init__(self, u: UNode, label: str) -> None:
        self.u = u
        self.trigger = u.trigger
        self.label = label

    def on_utt(self, r: RunState, x: UttCtx) -> list[Found] | None:
        s = self.u.match(x)
        if s is None:
            return None
        r.st[self.slot] = True
        if not r.events:
            return None
        m = x.a.mf[s[0] : s[1]]
        return [(x.evidence(s), f"“{m}”" if m else self.label)]

    def detail(self, r: RunState) -> str:
        return f"未出现：{self.label}"


class CCount(CNode):
    wants_utts = True

    def __init__(self, u: UNode, at_least: int | None, over: int | None, label: str) -> None:
        self.u = u
        self.at_least = at_least
        self.over = over
        self.trigger = u.trigger
        self.label = label

    def start(self, r: RunState) -> list[Found] | None:
        r.st[self.slot] = 0
        return None

    def on_utt(self, r: RunState, x: UttCtx) -> list[Found] | None:
        s = self.u.match(x)
        if s is None:
            return None
        n = r.st[self.slot] = r.st[self.slot] + 1
        if self.at_least is not None and n == self.at_least:
            return [(x.evidence(s), f"第 {n} 次：{self.label}")]
        if self.over is not None and n > self.over:
            return [(x.evidence(s), f"第 {n} 次（上限 {self.over}）：{self.label}")]
        return None

    def found(self, r: RunState) -> bool:
        n = r.st[self.slot]
        return n >= self.at_least if self.at_least is not None else n > (self.over or 0)

    def detail(self, r: RunState) -> str:
        return f"{self.label} 出现 {r.st[self.slot]} 次（至少 {self.at_least} 次）"


class Tally:
    """A count through the call (``share``: also the total it is a share of), whether it
    decided the node, and the evidence of the first occurrence."""

    __slots__ = ("count", "first", "found", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0
        self.found = False
        self.first: Evidence | None = None


class CShare(CNode):
    """Occurrences of ``of`` among occurrences of ``among``; decided at close."""

    wants_utts = True
    needs_end = True

    def __init__(
        self,
        of: list[int],
        among: list[int],
        over: float | None,
        under: float | None,
        min_total: int,
        label: str,
    ) -> None:
        self.of = frozenset(of)
        self.among = tuple(sorted(set(among) | set(of)))
        self.over = over
        self.under = under
        self.min_total = min_total
        self.trigger = frozenset(self.among)
        self.label = label

    def start(self, r: RunState) -> list[Found] | None:
        r.st[self.slot] = Tally()
        return None

    def on_utt(self, r: RunState, x: UttCtx) -> list[Found] | None:
        st: Tally = r.st[self.slot]
        spans = x.a.spans
        for atom in self.among:
            hits = spans.get(atom)
            if hits:
                st.total += len(hits)
                if atom in self.of:
                    st.count += len(hits)
                    if st.first is None:
                        st.first = x.evidence(hits[0])
        return None

    def close(self, r: RunState) -> list[Found] | None:
        st: Tally = r.st[self.slot]
        n_of, total = st.count, st.total
        if total < self.min_total:
            return None
        share = n_of / total
        if (self.over is not None and share > self.over) or (
            self.under is not None and share < self.under
        ):
            st.found = True
            ev = st.first or Evidence(start=0.0, end=0.0)
            return [(ev, f"{self.label}：{n_of}/{total} = {share:.0%}")]
        return None

    def found(self, r: RunState) -> bool:
        st: Tally = r.st[self.slot]
        return st.found


class COccurrences(CNode):
    """Occurrences of exact phrases in the scope, every one counted (several in one
    utterance count several times): found the moment they reach ``at_least``, or at close
    when they are at most ``at_most``."""

    wants_utts = True

    def __init__(
        self, atoms: list[int], at_least: int | None, at_most: int | None, label: str
    ) -> None:
        self.atoms = tuple(sorted(set(atoms)))
        self.at_least = at_least
        self.at_most = at_most
        self.needs_end = at_most is not None
        self.trigger = frozenset(self.atoms)
        self.label = label

    def start(self, r: RunState) -> list[Found] | None:
        r.st[self.slot] = Tally()
        return None

    def on_utt(self, r: RunState, x: UttCtx) -> list[Found] | None:
        st: Tally = r.st[self.slot]
        spans = x.a.spans
        n = 0
        first: Span | None = None
        for atom in self.atoms:
            hits = spans.get(atom)
            if hits:
                n += len(hits)
                if first is None or hits[0][0] < first[0]:
                    first = hits[0]
        if first is None:
            return None
        before = st.count
        st.count = before + n
        if st.first is None:
            st.first = x.evidence(first)
        at_least = self.at_least
        if at_least is not None and before < at_least <= st.count:
            st.found = True
            return [(x.evidence(first), f"第 {st.count} 次：{self.label}")]
        return None

    def close(self, r: RunState) -> list[Found] | None:
        st: Tally = r.st[self.slot]
        if self.at_most is not None and st.count <= self.at_most:
            st.found = True
            ev = st.first or Evidence(start=0.0, end=0.0)
            return [(ev, f"{self.label} 出现 {st.count} 次（至多 {self.at_most} 次）")]
        return None

    def found(self, r: RunState) -> bool:
        st: Tally = r.st[self.slot]
        return st.found

    def detail(self, r: RunState) -> str:
        st: Tally = r.st[self.slot]
        n = st.count
        if self.at_least is not None:
            return f"{self.label} 出现 {n} 次（至少 {self.at_least} 次）"
        return f"{self.label} 出现 {n} 次（至多 {self.at_most} 次）"


def _push(out: list[Any], item: Any) -> list[Any]:
    """``out`` with ``item`` appended; a new list when ``out`` is the shared empty one."""
    if out is NO_ITEMS:
        out = []
    out.append(item)
    return out


class Anchor:
    """A pending ``sequence`` anchor: the utterance, its span, the turns left and the
    deadline (call time) for what must follow it."""

    __slots__ = ("deadline", "span", "turns_left", "x")

    def __init__(
        self, x: UttCtx, span: Span, turns_left: int | None, deadline: float | None
    ) -> None:
        self.x = x
        self.span = span
        self.turns_left = turns_left
        self.deadline = deadline


class Pending:
    """A ``sequence``'s anchors still waiting for what must follow them, and how many
    times the sequence was found (``missing``: how many anchors went unanswered)."""

    __slots__ = ("anchors", "found")

    def __init__(self) -> None:
        self.anchors: list[Anchor] = []
        self.found = 0


class CSequence(CNode):
    """Anchors (``first``) and what follows them (``then``) within turns and/or seconds."""

    wants_utts = True
    wants_clock = True

    def __init__(
        self,
        first: UNode,
        then: UNode,
        turns: int | None,
        seconds: float | None,
        turn_role: Role | None,
        missing: bool,
        label: str,
    ) -> None:
        # Without pending anchors only an utterance matching ``first`` matters; while
        # anchors are pending the rule is "hot" and sees every utterance (turn counting).
        self.trigger = first.trigger
        self.first = first
        self.then = then
        self.turns = turns
        self.seconds = seconds
        self.turn_role = turn_role
        self.missing = missing
        self.label = label

    def start(self, r: RunState) -> list[Found] | None:
        r.st[self.slot] = Pending()
        return None

    @staticmethod
    def _events(r: RunState, out: list[tuple[UttCtx, Span | None, str]]) -> list[Found] | None:
        """Evidence only when the rule turns events into findings (forbid bodies)."""
        if not out or not r.events:
            return None
        return [(x.evidence(span), msg) for x, span, msg in out]

    def _expire(self, st: Pending, keep: list[Anchor], n_out: int) -> None:
        st.anchors = keep
        if self.missing and n_out:
            st.found += n_out

    def on_utt(self, r: RunState, x: UttCtx) -> list[Found] | None:
        st: Pending = r.st[self.slot]
        out: list[tuple[UttCtx, Span | None, str]] = NO_ITEMS  # made on the first event
        pending = st.anchors
        u = x
        if pending:
            # anchors still pending stay in ``pending`` (turns left updated in place);
            # ``keep`` is made only when one goes
            keep: list[Anchor] = NO_ITEMS
            then_span = self.then.match(x)
            counts = self.turn_role is None or u.role == self.turn_role
            for k in range(len(pending)):
                anchor = pending[k]
                ax = anchor.x
                drop = False
                if u.start < ax.start:
                    pass
                elif anchor.deadline is not None and u.start > anchor.deadline:
                    drop = True
                    if self.missing:
                        msg = f"{self.label}：{self.seconds:g} 秒内未出现"
                        out = _push(out, (ax, anchor.span, msg))
                elif then_span is not None:
                    drop = True
                    if not self.missing:
                        st.found += 1
                        out = _push(out, (x, then_span, self.label))
                elif counts and anchor.turns_left is not None:
                    left = anchor.turns_left - 1
                    if left <= 0:
                        drop = True
                        if self.missing:
                            msg = f"{self.label}：{self.turns} 轮内未出现"
                            out = _push(out, (ax, anchor.span, msg))
                    else:
                        anchor.turns_left = left
                if drop:
                    if keep is NO_ITEMS:
                        keep = pending[:k]
                elif keep is not NO_ITEMS:
                    keep.append(anchor)
            if keep is not NO_ITEMS:
                self._expire(st, keep, len(out))
        s = self.first.match(x)
        if s is not None:
            st.anchors.append(
                Anchor(x, s, self.turns, u.end + self.seconds if self.seconds else None)
            )
        r.every_utterance(bool(st.anchors))  # anchors pending: turns count
        return self._events(r, out) if out else None  # no call on the usual path

    def due(self, r: RunState) -> float:
        st: Pending = r.st[self.slot]
        pend = st.anchors
        if not pend or self.seconds is None:
            return INF
        return min(a.deadline for a in pend if a.deadline is not None) + r.ctx.grace

    def on_clock(self, r: RunState, now: float) -> list[Found] | None:
        st: Pending = r.st[self.slot]
        if not st.anchors or self.seconds is None:
            return None
        out: list[tuple[UttCtx, Span | None, str]] = []
        keep: list[Anchor] = []
        for anchor in st.anchors:
            if anchor.deadline is not None and now > anchor.deadline + r.ctx.grace:
                if self.missing:
                    out.append(
                        (anchor.x, anchor.span, f"{self.label}：{self.seconds:g} 秒内未出现")
                    )
            else:
                keep.append(anchor)
        self._expire(st, keep, len(out))
        r.every_utterance(bool(st.anchors))
        return self._events(r, out)

    def close(self, r: RunState) -> list[Found] | None:
        st: Pending = r.st[self.slot]
        out: list[tuple[UttCtx, Span | None, str]] = []
        if self.missing:
            out = [(a.x, a.span, f"{self.label}：之后未出现") for a in st.anchors]
            st.found += len(out)
        st.anchors = []
        return self._events(r, out)

    def found(self, r: RunState) -> bool:
        st: Pending = r.st[self.slot]
        return bool(st.found)

    def detail(self, r: RunState) -> str:
        return f"未出现：{self.label}"


class CResponseGap(CNode):
    wants_timeline = True

    def __init__(self, over: float) -> None:
        self.over = over

    def tl_interest(self) -> dict[str, float]:
        return {"response": self.over}

    def on_tl(self, r: RunState, e: TEvent) -> list[Found] | None:
        if e.kind == "response" and e.seconds > self.over:
            r.st[self.slot] = True
            return [
                (e.evidence(), f"客户说完 {e.seconds:.1f} 秒后坐席才应答（上限 {self.over:g} 秒）")
            ]
        return None


class Silences:
    """Whether a silence decided the node, and the seconds of silence counted so far."""

    __slots__ = ("found", "total")

    def __init__(self) -> None:
        self.found = False
        self.total = 0.0


class CSilence(CNode):
    wants_timeline = True

    def __init__(
        self,
        over: float | None,
        total_over: float | None,
        count_from: float,
        except_after: UNode | None,
    ) -> None:
        self.over = over
        self.total_over = total_over
        self.count_from = count_from
        self.except_after = except_after
        # a silence over the limit rests on the turn before it not holding the exempting
        # phrase (a hold notice): that turn is the hit's evidence, so a turn heard with low
        # confidence makes the hit uncertain, as for any phrase rule
        self.reads_text = except_after is not None

    def tl_interest(self) -> dict[str, float]:
        lo = self.over if self.over is not None else INF
        if self.total_over is not None:
            lo = min(lo, self.count_from)
        return {"silence": lo}

    def start(self, r: RunState) -> list[Found] | None:
        r.st[self.slot] = Silences()
        return None

    def on_tl(self, r: RunState, e: TEvent) -> list[Found] | None:
        if e.kind != "silence":
            return None
        sec = e.seconds
        if not (
            (self.over is not None and sec > self.over)
            or (self.total_over is not None and sec >= self.count_from)
        ):
            return None  # cannot count: skip the except_after phrases
        ex = self.except_after
        if ex is not None and e.before is not None and ex.match(e.before) is not None:
            return None
        st: Silences = r.st[self.slot]
        out: list[Found] = []
        if self.over is not None and e.seconds > self.over:
            st.found = True
            where = e.before.evidence() if ex is not None and e.before is not None else e.evidence()
            out.append((where, f"双方静默 {e.seconds:.1f} 秒（上限 {self.over:g} 秒）"))
        if self.total_over is not None and e.seconds >= self.count_from:
            before = st.total
            st.total += e.seconds
            if before <= self.total_over < st.total:
                st.found = True
                out.append(
                    (e.evidence(), f"静默累计 {st.total:.1f} 秒（上限 {self.total_over:g} 秒）")
                )
        return out or None

    def found(self, r: RunState) -> bool:
        st: Silences = r.st[self.slot]
        return st.found


class CHold(CNode):
    """A long agent silence (the customer mostly silent too) without a hold notice before
    it or a thank-you-for-waiting after it.

    A missing phrase rests on what the agent's turn before (or after) the silence was heard
    to say: the hit's evidence is that turn (the one heard with the lowest confidence when
    both phrases are missing), so a turn heard with low confidence makes the hit uncertain,
    as for any phrase rule. A silence with no agent turn before or after it is evidence of
    itself (the gap)."""

    wants_timeline = True
    reads_text = True

    def __init__(self, min_seconds: float, notice: UNode, thanks: UNode, max_cust: float):
        self.min_seconds = min_seconds
        self.notice = notice
        self.thanks = thanks
        self.max_cust = max_cust

    def tl_interest(self) -> dict[str, float]:
        return {"agent_gap": self.min_seconds}

    def on_tl(self, r: RunState, e: TEvent) -> list[Found] | None:
        if e.kind != "agent_gap" or e.seconds < self.min_seconds or e.other > self.max_cust:
            return None
        missing = []
        turns: list[UttCtx | None] = []  # where each missing phrase was to be said
        if e.before is None or self.notice.match(e.before) is None:
            missing.append("等待前未说“请稍候”")
            turns.append(e.before)
        if e.after is None or self.thanks.match(e.after) is None:
            missing.append("等待后未说“让您久等了”")
            turns.append(e.after)
        if not missing:
            return None
        r.st[self.slot] = True
        detail = f"坐席静默 {e.seconds:.1f} 秒：" + "，".join(missing)
        said = [x for x in turns if x is not None]
        if len(said) < len(turns):
            return [(e.evidence(), detail)]
        weakest = min(said, key=lambda x: x.u.confidence)
        return [(weakest.evidence(), detail)]


class CTalkOver(CNode):
    """A speaker starting inside the other's speech for at least ``min_ms``.

    The hit rests on the turn talked over being speech: its evidence is that turn, so a
    turn heard with low confidence (babble or line noise on that channel, read as long
    low-confidence "speech") makes the hit uncertain, as for any phrase rule."""

    wants_timeline = True
    reads_text = True

    def __init__(self, min_ms: float, by: Role) -> None:
        self.min_ms = min_ms
        self.by = by

    def tl_interest(self) -> dict[str, float]:
        return {"overlap": self.min_ms / 1000}

    def on_tl(self, r: RunState, e: TEvent) -> list[Found] | None:
        if e.kind != "overlap" or e.role != self.by or e.seconds * 1000 < self.min_ms:
            return None
        r.st[self.slot] = True
        who = "坐席" if self.by == Role.AGENT else "客户"
        where = e.before.evidence() if e.before is not None else e.evidence()
        return [(where, f"{who}抢话，重叠 {e.seconds * 1000:.0f} 毫秒")]


class CMetric(CNode):
    """A call measure out of range: speech_rate (chars/min), volume (dBFS), duration (s),
    utterance_count. Decided at close (``duration`` / ``utterance_count`` ``over`` as soon
    as passed)."""

    needs_end = True

    def __init__(
        self,
        metric: str,
        role: Role | None,
        over: float | None,
        under: float | None,
        min_speech: float,
    ) -> None:
        self.metric = metric
        self.role = role
        self.over = over
        self.under = under
        self.min_speech = min_speech
        self.wants_clock = metric == "duration" and over is not None
        self.wants_utts = metric == "utterance_count" and over is not None
        self.trigger = None if self.wants_utts else frozenset()

    _NAMES = {
        "speech_rate": ("语速", "字/分钟"),
        "volume": ("音量", "dBFS"),
        "duration": ("通话时长", "秒"),
        "utterance_count": ("话轮数", "句"),
    }

    def _check(self, r: RunState, value: float | None, ev: Evidence) -> list[Found] | None:
        if value is None or r.st[self.slot]:
            return None
        name, unit = self._NAMES[self.metric]
        if self.over is not None and value > self.over:
            r.st[self.slot] = True
            return [(ev, f"{name} {value:.1f} {unit}，高于 {self.over:g}")]
        if self.under is not None and value < self.under:
            r.st[self.slot] = True
            return [(ev, f"{name} {value:.1f} {unit}，低于 {self.under:g}")]
        return None

    def due(self, r: RunState) -> float:
        if self.metric == "duration" and self.over is not None and not r.st[self.slot]:
            return self.over
        return INF

    def on_clock(self, r: RunState, now: float) -> list[Found] | None:
        if self.over is not None and now > self.over:
            return self._check(r, now, Evidence(start=0.0, end=now))
        return None

    def on_utt(self, r: RunState, x: UttCtx) -> list[Found] | None:
        n = r.ctx.stats.count(self.role)
        if self.over is not None and n > self.over:
            return self._check(r, n, x.evidence())
        return None

    def close(self, r: RunState) -> list[Found] | None:
        s = r.ctx.stats
        end = r.ctx.call_end
        value: float | None
        if self.metric == "duration":
            value = end
        elif self.metric == "utterance_count":
            value = s.count(self.role)
        elif self.metric == "speech_rate":
            secs = s.seconds(self.role)
            value = s.chars(self.role) / secs * 60 if secs > max(self.min_speech, 0.0) else None
        else:
            value = s.level(self.role)
        return self._check(r, value, Evidence(start=0.0, end=end))


class Said:
    """A sentence said (its match form) and how many times, near enough."""

    __slots__ = ("text", "times")

    def __init__(self, text: str) -> None:
        self.text = text
        self.times = 1


class Repeats:
    """The sentences said so far, and whether one was said the number of times."""

    __slots__ = ("found", "said")

    def __init__(self) -> None:
        self.said: list[Said] = []
        self.found = False


class CRepetition(CNode):
    wants_utts = True
    trigger: frozenset[int] | None = None

    def __init__(self, role: Role | None, times: int, similarity: float, min_chars: int):
        self.role = role
        self.times = times
        self.similarity = similarity
        self.min_chars = min_chars

    def start(self, r: RunState) -> list[Found] | None:
        r.st[self.slot] = Repeats()
        return None

    def on_utt(self, r: RunState, x: UttCtx) -> list[Found] | None:
        if self.role is not None and x.role != self.role:
            return None
        mf = x.a.mf
        if len(mf) < self.min_chars:
            return None
        st: Repeats = r.st[self.slot]
        for said in st.said:
            if fuzz.ratio(said.text, mf, score_cutoff=self.similarity):
                said.times += 1
                if said.times == self.times:
                    st.found = True
                    return [(x.evidence((0, len(mf))), f"同一句话重复 {self.times} 次")]
                return None
        st.said.append(Said(mf))
        return None

    def found(self, r: RunState) -> bool:
        st: Repeats = r.st[self.slot]
        return st.found


class StagesSeen:
    """Per stage, its first occurrence (utterance number, utterance, span) or None; with
    ``in_order``, also the chain found so far (per stage, the occurrence that follows the
    previous stage's, or None) and the next stage it waits for; and whether the stages were
    found."""

    __slots__ = ("chain", "found", "next", "seen")

    def __init__(self, n: int) -> None:
        self.seen: list[Any] = [None] * n  # (int, UttCtx, Span) | None
        self.chain: list[Any] = [None] * n
        self.next = 0
        self.found = False


class CStages(CNode):
    """Stages (e.g. Explore → Offer → Action → Confirm): found when every stage occurs, in
    the declared order when ``in_order``: each stage in the same utterance as the one
    before it or later (the earliest such chain; an offer phrase in the greeting, 有什么我
    可以为您服务的, does not hide the offer made after the exploring)."""

    wants_utts = True

    def __init__(self, names: list[str], matchers: list[UNode], in_order: bool) -> None:
        self.names = names
        self.matchers = matchers
        self.in_order = in_order
        trig = [m.trigger for m in matchers]
        self.trigger = None if any(t is None for t in trig) else frozenset().union(*trig)  # type: ignore[arg-type]

    def start(self, r: RunState) -> list[Found] | None:
        r.st[self.slot] = StagesSeen(len(self.names))
        return None

    def on_utt(self, r: RunState, x: UttCtx) -> list[Found] | None:
        st: StagesSeen = r.st[self.slot]
        seen = st.seen
        if st.found:
            return None
        new = False
        for i, m in enumerate(self.matchers):
            if seen[i] is None:
                s = m.match(x)
                if s is not None:
                    seen[i] = (x.n, x, s)
                    new = True
        if self.in_order:
            return self._chain(r, st, x)
        if not new:
            return None
        r.trigger_retired()  # a stage's phrases no longer matter once it is seen
        if any(v is None for v in seen):
            return None
        st.found = True
        if not r.events:
            return None
        _, lx, ls = max(seen, key=lambda v: v[0])
        return [(lx.evidence(ls), " → ".join(self.names))]

    def _chain(self, r: RunState, st: StagesSeen, x: UttCtx) -> list[Found] | None:
        """Extend the in-order chain with ``x``: the stage it waits for, and the stages
        after it that the same utterance also holds."""
        n = len(self.matchers)
        grew = False
        while st.next < n:
            i = st.next
            first = st.seen[i]
            # the stage's first occurrence, when it is this utterance, is its match here
            s = first[2] if first is not None and first[0] == x.n else self.matchers[i].match(x)
            if s is None:
                break
            st.chain[i] = (x.n, x, s)
            st.next += 1
            grew = True
        if not grew:
            return None
        r.trigger_retired()  # the stages behind the chain no longer matter
        if st.next < n:
            return None
        st.found = True
        if not r.events:
            return None
        _, lx, ls = st.chain[-1]
        return [(lx.evidence(ls), " → ".join(self.names))]

    def found(self, r: RunState) -> bool:
        st: StagesSeen = r.st[self.slot]
        return st.found

    def trigger_parts(self) -> list[tuple[int, frozenset[int]]]:
        """One part per stage: a stage's phrases no longer matter once it is seen."""
        out: list[tuple[int, frozenset[int]]] = []
        for i, m in enumerate(self.matchers):
            assert m.trigger is not None
            out.append((i, m.trigger))
        return out

    def part_open(self, r: RunState, part: int) -> bool:
        st: StagesSeen = r.st[self.slot]
        if self.in_order:  # a stage matters until the chain has passed it
            return part >= st.next
        return st.seen[part] is None

    def detail(self, r: RunState) -> str:
        st: StagesSeen = r.st[self.slot]
        seen = st.seen
        missing = [n for n, v in zip(self.names, seen, strict=True) if v is None]
        if missing:
            return "缺少阶段：" + "、".join(missing)
        got = sorted(zip(seen, self.names, strict=True), key=lambda p: p[0][0])
        return "阶段顺序不对：" + " → ".join(n for _, n in got)


class CHangup(CNode):
    needs_end = True

    def __init__(self, first: Role, margin: float) -> None:
        self.first = first
        self.margin = margin

    def close(self, r: RunState) -> list[Found] | None:
        ends = r.ctx.role_ends()
        other = Role.CUSTOMER if self.first == Role.AGENT else Role.AGENT
        a, b = ends.get(self.first), ends.get(other)
        if a is None or b is None:
            return None
        if a < b - self.margin:
            r.st[self.slot] = True
            who = "坐席" if self.first == Role.AGENT else "客户"
            return [(Evidence(start=a, end=b), f"{who}先挂机（{a:.1f} 秒 vs {b:.1f} 秒）")]
        return None


class VerdictsSeen:
    """Whether every rule named passed, and those that did not."""

    __slots__ = ("failed", "found")

    def __init__(self) -> None:
        self.found = False
        self.failed: list[str] = []


class CVerdicts(CNode):
    needs_end = True

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids

    def start(self, r: RunState) -> list[Found] | None:
        r.st[self.slot] = VerdictsSeen()
        return None

    def close(self, r: RunState) -> list[Found] | None:
        ev = r.ctx
        failed = [i for i in self.ids if not ev.rule_ok(i)]
        st: VerdictsSeen = r.st[self.slot]
        st.failed = failed
        if failed:
            if all(ev.rule_unsure(i) for i in failed):
                # only uncertain verdicts stand in the way: so is this one
                r.unsure_why = "、".join(failed) + " 待复核"
            return None
        st.found = True
        return [(Evidence(start=0.0, end=r.ctx.call_end), "全部通过：" + "、".join(self.ids))]

    def found(self, r: RunState) -> bool:
        st: VerdictsSeen = r.st[self.slot]
        return st.found

    def detail(self, r: RunState) -> str:
        st: VerdictsSeen = r.st[self.slot]
        return "未通过：" + "、".join(st.failed)


class CAll(CNode):
    def __init__(self, kids: list[CNode]) -> None:
        self._kids = kids
        self.wants_utts = any(k.wants_utts for k in kids)
        self.wants_timeline = any(k.wants_timeline for k in kids)
        self.wants_clock = any(k.wants_clock for k in kids)
        self.reads_text = any(k.reads_text for k in kids)
        self.needs_end = any(k.needs_end for k in kids)
        self.trigger = _union([k.trigger for k in kids if k.wants_utts])

    def kids(self) -> list[CNode]:
        return self._kids

    def start(self, r: RunState) -> list[Found] | None:
        r.st[self.slot] = False
        for k in self._kids:
            k.start(r)
        return self._after(r, None)

    def _after(self, r: RunState, evs: list[Found] | None) -> list[Found] | None:
        if r.st[self.slot] or not all(k.found(r) for k in self._kids):
            return None
        r.st[self.slot] = True
        if evs:
            return evs[:1]
        return [_span_ev(0.0, r.ctx.clock, "全部条件满足")]

    # (explicit loops, no callback: these run for every timeline event and utterance)
    def on_utt(self, r: RunState, x: UttCtx) -> list[Found] | None:
        evs: list[Found] = []
        for k in self._kids:
            if k.wants_utts:
                e = k.on_utt(r, x)
                if e:
                    evs.extend(e)
        return self._after(r, evs)

    def on_tl(self, r: RunState, e: TEvent) -> list[Found] | None:
        evs: list[Found] = []
        for k in self._kids:
            if k.wants_timeline:
                got = k.on_tl(r, e)
                if got:
                    evs.extend(got)
        return self._after(r, evs)

    def on_clock(self, r: RunState, now: float) -> list[Found] | None:
        evs: list[Found] = []
        for k in self._kids:
            if k.wants_clock:
                e = k.on_clock(r, now)
                if e:
                    evs.extend(e)
        return self._after(r, evs)

    def close(self, r: RunState) -> list[Found] | None:
        evs: list[Found] = []
        for k in self._kids:
            e = k.close(r)
            if e:
                evs.extend(e)
        return self._after(r, evs)

    def detail(self, r: RunState) -> str:
        return "；".join(k.detail(r) for k in self._kids if not k.found(r))


class CAny(CAll):
    def _after(self, r: RunState, evs: list[Found] | None) -> list[Found] | None:
        if any(k.found(r) for k in self._kids):
            r.st[self.slot] = True
        return evs or None

    def detail(self, r: RunState) -> str:
        return " 或 ".join(k.detail(r) for k in self._kids)


class CNot(CNode):
    """Found at close when the inner condition was never found."""

    needs_end = True

    def __init__(self, kid: CNode, label: str) -> None:
        self.kid = kid
        self.wants_utts = kid.wants_utts
        self.wants_timeline = kid.wants_timeline
        self.wants_clock = kid.wants_clock
        self.reads_text = kid.reads_text
        self.trigger = kid.trigger
        self.label = label

    def kids(self) -> list[CNode]:
        return [self.kid]

    def start(self, r: RunState) -> list[Found] | None:
        r.st[self.slot] = False
        self.kid.start(r)
        return None

    def on_utt(self, r: RunState, x: UttCtx) -> list[Found] | None:
        self.kid.on_utt(r, x)
        return None

    def on_tl(self, r: RunState, e: TEvent) -> list[Found] | None:
        self.kid.on_tl(r, e)
        return None

    def on_clock(self, r: RunState, now: float) -> list[Found] | None:
        self.kid.on_clock(r, now)
        return None

    def close(self, r: RunState) -> list[Found] | None:
        self.kid.close(r)
        if self.kid.found(r):
            return None
        r.st[self.slot] = True
        return [_span_ev(0.0, r.ctx.clock, f"未出现：{self.label}")]

    def detail(self, r: RunState) -> str:
        return f"出现了：{self.label}"


def _union(trigs: list[frozenset[int] | None]) -> frozenset[int] | None:
    if any(t is None for t in trigs):
        return None
    out: frozenset[int] = frozenset()
    for t in trigs:
        assert t is not None
        out |= t
    return out
