"""The executable form of a pack: its rules as the runtime runs them (:class:`Rule`) and
one dispatch plan (:class:`Plan`), made once when the pack is loaded.

The operators' compile steps (``rules.ops``) build each rule's nodes and hand them here
with the rule's spec; everything the evaluator reads per utterance is derived here, once,
into plain typed fields (compiled attribute reads). The pack loader wraps a plan into a
``RulePack``; the engine only needs something that holds one (:class:`Executable`).
"""

from __future__ import annotations

from typing import Any, Final, Protocol

from ...messages import CallInfo, Direction, Role, RuleVerdict, Severity, Verdict
from ..lang.schema import RuleSpec, Settings
from .nodes import CNode, SNode, _union
from .scoring import deduction_of, grade_of
from .textindex import Analysis, TextIndex

_ROLES: Final = (Role.AGENT, Role.CUSTOMER, Role.UNKNOWN)  # by role index
_ALL_ROLES: Final = frozenset(Role)


class Rule:
    """One rule as the runtime runs it: its spec, its compiled nodes and what the
    evaluator reads about it on every utterance."""

    def __init__(
        self,
        spec: RuleSpec,
        index: int,
        body: CNode,
        when: CNode | None,
        static_when: SNode | None,
        slots: int,
        deferred: bool,
        deps: tuple[str, ...],
        label: str,
    ) -> None:
        sc = spec.scope
        self.spec = spec
        self.id: str = spec.id
        self.index: int = index
        self.bit: int = 1 << index
        self.require: bool = spec.require is not None
        self.forbid: bool = not self.require
        self.mode: str = "require" if self.require else "forbid"
        self.body: CNode = body
        self.when: CNode | None = when
        self.static_when: SNode | None = static_when
        roles = None if sc.role == "any" else frozenset({Role(sc.role)})
        self.roles: frozenset[Role] | None = roles
        self.direction: Direction | None = sc.direction
        self.na_direction = (
            f"不适用：仅限{'呼出' if sc.direction.value == 'outbound' else '呼入'}电话"
            if sc.direction is not None
            else ""
        )
        self.slots: int = slots
        self.deferred: bool = deferred or sc.last_seconds is not None or sc.last_turns is not None
        self.deps: tuple[str, ...] = deps
        self.label: str = label
        self.wants_timeline: bool = body.wants_timeline or (
            when is not None and when.wants_timeline
        )
        self.wants_clock: bool = body.wants_clock or (when is not None and when.wants_clock)
        self.first_seconds: float | None = sc.first_seconds
        self.first_turns: int | None = sc.first_turns
        self.last_seconds: float | None = sc.last_seconds
        self.last_turns: int | None = sc.last_turns
        self.windowed: bool = sc.first_seconds is not None or sc.first_turns is not None
        # the body sees utterances as they arrive
        self.body_utts: bool = body.wants_utts and not self.deferred
        # the body reads utterances: a failure resting on a low-confidence one is uncertain
        self.text_body: bool = body.wants_utts or body.reads_text
        # scoped to the agent or the customer: uncertain on a call whose roles are unknown
        self.role_scoped: bool = roles is not None and Role.UNKNOWN not in roles
        self.tolerance: int = spec.tolerance
        self.max_findings: int = spec.max_findings
        self.description: str = spec.description
        self.severity: Severity = spec.severity
        self.critical: bool = spec.severity == Severity.CRITICAL
        self.weight: float = spec.weight
        self.suggestion: str | None = spec.suggestion
        self.deduct_once: bool = spec.deduct == "once"
        self.max_deduction: float | None = spec.max_deduction
        # the verdict of every call where the rule passes (immutable, shared)
        self.passed = RuleVerdict(
            spec.id, Verdict.PASSED, spec.severity, spec.weight, spec.description, 0.0, ""
        )
        # per role: the atoms one of which an utterance of that role must contain to matter
        # to the rule (None: every utterance); roles the rule never sees are absent
        by_role: dict[Role, list[frozenset[int] | None]] = {r: [] for r in Role}
        utt_roles: set[Role] = set()
        if when is not None and when.wants_utts:
            utt_roles |= _ALL_ROLES
            for r in Role:
                by_role[r].append(when.trigger)
        if self.body_utts:
            utt_roles |= roles or _ALL_ROLES
            for r in roles or _ALL_ROLES:
                by_role[r].append(body.trigger)
        self.utt_roles: frozenset[Role] = frozenset(utt_roles)
        self.triggers: dict[Role, frozenset[int] | None] = {
            r: _union(t) for r, t in by_role.items() if r in utt_roles
        }
        interest: dict[str, float] = {}
        for n in (body, when):
            if n is not None and n.wants_timeline:
                for kind, v in n.tl_interest().items():
                    interest[kind] = min(v, interest.get(kind, v))
        self.tl_interest: dict[str, float] = interest

    def trigger_parts(self, role: Role) -> list[tuple[int, frozenset[int]]]:
        """The rule's trigger for ``role`` split into parts that retire separately:
        ``(body part or -1, atoms)`` (see :meth:`.nodes.CNode.trigger_parts`); the union of
        the atoms is ``triggers[role]``."""
        out: list[tuple[int, frozenset[int]]] = []
        when = self.when
        if when is not None and when.wants_utts:
            assert when.trigger is not None
            out.append((-1, when.trigger))
        roles = self.roles
        if self.body_utts and (roles is None or role in roles):
            out.extend(self.body.trigger_parts())
        return out

    def deduction(self, occurrences: int) -> float:
        return deduction_of(
            self.weight, self.tolerance, self.deduct_once, self.max_deduction, occurrences
        )


class Part:
    """A lazy trigger part of a rule (see :class:`Plan`): the role index it dispatches
    for, its bit among the plan's parts, and the body part it stands for (-1: all)."""

    __slots__ = ("bit", "body_part", "role_ix")

    def __init__(self, role_ix: int, bit: int, body_part: int) -> None:
        self.role_ix = role_ix
        self.bit = bit
        self.body_part = body_part


class Plan:
    """A pack's rules and the one dispatch plan the evaluator runs them by.

    Sets of rules are int bit masks (bit i = rule index i). Per role index: the rules each
    exact phrase (keyword atom) matters to, the rules each atom of any kind matters to
    (the reference dispatch), and the rules that see every utterance of the role.

    Lazy trigger parts (fuzzy, regex, similar, entity atoms of a rule's trigger) are
    numbered across roles; a call keeps the parts still live as an int bit mask per role,
    and each utterance text remembers which parts it was checked for and which hit
    (``Analysis.pknown`` / ``phit``), so dispatching an utterance is two mask operations
    instead of a lookup per live part. A part retires once its rule is decided, a body
    part (a stage) once the body says so (:meth:`.nodes.CNode.part_open`)."""

    def __init__(
        self,
        name: str,
        version: str,
        settings: Settings,
        rules: list[Rule],
        index: TextIndex,
        statics: list[SNode],
        holiday_atoms: dict[tuple[int, float], tuple[int, ...]],
        order: list[int],
    ) -> None:
        self.name = name
        self.version = version
        self.rules = rules
        self.index = index
        self.statics = statics
        self.holiday_atoms = holiday_atoms
        self.order = order
        # (rule index, verdict, detail, deduction) -> the shared verdict (memo)
        self.verdict_cache: dict[tuple[int, Verdict, str, float], RuleVerdict] = {}
        self.grades: list[tuple[str, float]] = [(g.name, g.min_score) for g in settings.grades]
        self.fail_grade: str | None = settings.fail_grade
        self.grace: float = settings.window_grace_seconds
        self.max_utt: float = settings.max_utterance_seconds
        self.low_conf: float = settings.uncertain_confidence
        self.holidays = settings.holidays
        ix = index
        self.always: list[int] = []
        self.by_atom: list[dict[int, int]] = []
        self.kw_by_atom: list[dict[int, int]] = []
        # per rule index: its lazy parts
        self.parts_of: list[list[Part]] = [[] for _ in rules]
        self.part_rules = 0  # the rules with lazy parts
        # per part number: its key (an atom group of the index), lazy atoms and rule index
        self.part_keys: list[Any] = []
        self.part_atoms: list[tuple[int, ...]] = []
        self.rules_of: list[int] = []
        for rix, role in enumerate(_ROLES):
            always = 0
            by_atom: dict[int, int] = {}
            for r in rules:
                if role not in r.utt_roles:
                    continue
                trig = r.triggers[role]
                if trig is None:
                    always |= r.bit
                else:
                    for atom in trig:
                        by_atom[atom] = by_atom.get(atom, 0) | r.bit
            self.always.append(always)
            self.by_atom.append(by_atom)
            self.kw_by_atom.append({a: m for a, m in by_atom.items() if ix.kind(a) == "keyword"})
            ix.set_group(role, set(by_atom))
            for r in rules:
                if role not in r.utt_roles or r.triggers[role] is None:
                    continue
                for k, (body_part, atoms) in enumerate(r.trigger_parts(role)):
                    lazy = tuple(sorted(a for a in atoms if ix.kind(a) != "keyword"))
                    if not lazy:
                        continue
                    key = ("part", role.value, r.index, k)
                    ix.set_group(key, set(lazy))
                    self.parts_of[r.index].append(Part(rix, 1 << len(self.part_keys), body_part))
                    self.part_rules |= r.bit
                    self.part_keys.append(key)
                    self.part_atoms.append(lazy)
                    self.rules_of.append(r.index)
        self.timeline_rules = [r.index for r in rules if r.wants_timeline]
        self.has_timeline = bool(self.timeline_rules)
        # timeline event kind -> (shortest duration of interest, rule index) per rule
        self.tl_by_kind: dict[str, list[tuple[float, int]]] = {}
        self.tl_interest: dict[str, float] = {}
        for r in rules:
            for kind, thr in r.tl_interest.items():
                self.tl_by_kind.setdefault(kind, []).append((thr, r.index))
                self.tl_interest[kind] = min(thr, self.tl_interest.get(kind, thr))
        self.clock_rules = [r.index for r in rules if r.wants_clock]
        self.windowed = [r.index for r in rules if r.windowed]  # rules with a first_* window
        # utterances starting later are never in a first_* window
        self.max_window: float = max(
            [(rules[i].first_seconds or 0.0) + self.grace for i in self.windowed] + [0.0]
        )
        # mask of parts -> the atom groups to compute for them (see miss_groups)
        self._miss: dict[int, tuple[Any, ...]] = {}
        self.max_groups = 4096  # combinations of parts given a group of their own
        self._hit_rules: dict[int, int] = {}
        # static conditions and holiday greetings depend only on the call's direction,
        # date and minute of the day: memoised per such key
        self._statics: dict[Any, tuple[list[bool], dict[float, tuple[int, ...]]]] = {}

    def statics_of(self, call: CallInfo) -> tuple[list[bool], dict[float, tuple[int, ...]]]:
        """The call's static condition values and holiday greeting atoms."""
        sa = call.started_at
        key = (call.direction, None if sa is None else (sa.date(), sa.hour, sa.minute))
        got = self._statics.get(key)
        if got is not None:
            return got
        holidays = self.holidays
        values = [s.eval(call, holidays) for s in self.statics]
        atoms: dict[float, tuple[int, ...]] = {}
        if self.holiday_atoms and sa is not None:
            day = sa.date()
            for (hi, thr), hatoms in self.holiday_atoms.items():
                if holidays[hi].covers(day):
                    atoms[thr] = atoms.get(thr, ()) + hatoms
        got = (values, atoms)
        if len(self._statics) < 50_000:
            self._statics[key] = got
        return got

    def dispatch_for(self, a: Analysis, rix: int) -> int:
        """The rules that an utterance with analysis ``a`` and role index ``rix`` can
        matter to through its exact phrases (one Aho-Corasick pass, no fuzzy work), plus
        the rules that see every utterance; memoised on the analysis by the evaluator.
        Rules triggered by lazy atoms (fuzzy, regex, ...) are added per call from the
        lazy parts while they can still change."""
        by_atom = self.kw_by_atom[rix]
        m = self.always[rix]
        for atom in a.spans:
            hit = by_atom.get(atom)
            if hit is not None:
                m |= hit
        return m

    def full_dispatch(self, a: Analysis, rix: int) -> int:
        """Every rule an utterance can matter to, all lazy atoms computed (reference)."""
        self.index.ensure(a, _ROLES[rix])
        by_atom = self.by_atom[rix]
        m = self.always[rix]
        for atom in a.spans:
            hit = by_atom.get(atom)
            if hit is not None:
                m |= hit
        return m

    def grade(self, score: float, failed: bool) -> str:
        return grade_of(self.grades, self.fail_grade, score, failed)

    def hit_rules(self, hits: int) -> int:
        """The rules of the parts in mask ``hits`` (memoised)."""
        out = self._hit_rules.get(hits)
        if out is None:
            rules = self.rules_of
            out = 0
            k = 0
            m = hits
            while m:
                if m & 1:
                    out |= 1 << rules[k]
                m >>= 1
                k += 1
            if len(self._hit_rules) < 100_000:
                self._hit_rules[hits] = out
        return out

    def miss_groups(self, parts: int) -> tuple[Any, ...]:
        """The atom groups of the index that compute the parts in mask ``parts``: one
        group for their union, in one prefiltered pass (registered on first use), or, for
        an unusual pack with very many combinations, one group per part (memoised)."""
        got = self._miss.get(parts)
        if got is not None:
            return got
        keys = []
        atoms: set[int] = set()
        k = 0
        m = parts
        while m:
            if m & 1:
                keys.append(self.part_keys[k])
                atoms.update(self.part_atoms[k])
            m >>= 1
            k += 1
        if len(keys) == 1 or len(self._miss) >= self.max_groups:
            got = tuple(keys)
        else:
            key = ("parts", parts)
            self.index.set_group(key, atoms)
            got = (key,)
        if len(self._miss) < self.max_groups:
            self._miss[parts] = got
        return got

    def rule(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)


class Executable(Protocol):
    """What the engine is handed: anything holding a plan (a loaded ``RulePack``)."""

    @property
    def plan(self) -> Plan: ...
