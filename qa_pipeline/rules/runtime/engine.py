"""The per-call evaluator: utterances in, findings out as soon as they are decided.

``CallEvaluator.feed`` / ``advance`` / ``end`` is the live API; :func:`score_transcript`
feeds a stored transcript through the very same object in one go.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from ...messages import (
    CallEnded,
    CallInfo,
    Evidence,
    Finding,
    Role,
    RuleVerdict,
    Scorecard,
    Utterance,
    Verdict,
    replace,
)
from ...transcript import Transcript
from .nodes import INF, NO_ITEMS, CallContext, Found, RunState, TEvent, UttCtx
from .plan import Executable, Rule
from .scoring import fround, score_from
from .textindex import Analysis, pause
from .timeline import Timeline

# enum members and tables as Final module constants: compiled code reads them directly
# instead of looking the class up in the module and the member on the class every time
_AGENT: Final = Role.AGENT
_CUSTOMER: Final = Role.CUSTOMER
_UNKNOWN: Final = Role.UNKNOWN
_PASSED: Final = Verdict.PASSED
_FAILED: Final = Verdict.FAILED
_NA: Final = Verdict.NOT_APPLICABLE
_UNCERTAIN: Final = Verdict.UNCERTAIN
_ROLE_IX: Final = {_AGENT: 0, _CUSTOMER: 1, _UNKNOWN: 2}
_MAX_SEEN: Final = 3
#: turns shown for a failed ``require`` with a ``last_*`` window (the last ones)
_MAX_WINDOW: Final = 12
_ROLES_UNKNOWN: Final = "角色未知：录音未区分坐席与客户（如单声道），无法判定"
_NO_SPEECH: Final = "不适用：通话中没有听到语音"


class RuleRun(RunState):
    """One rule on one call."""

    __slots__ = (
        "body_open",
        "body_status",
        "done",
        "evaluator",
        "findings",
        "held",
        "na_reason",
        "occ",
        "rule",
        "unsure",
        "unsure_detail",
        "uocc",
        "verdict",
        "wants_clock",
        "when_ok",
    )

    def __init__(self, rule: Rule, evaluator: CallEvaluator) -> None:
        # whether the body's events become findings (forbid); nodes skip building
        # evidence nobody reads (require bodies, ``when`` conditions)
        super().__init__(evaluator, rule.slots, rule.forbid)
        self.rule = rule
        self.evaluator = evaluator
        self.body_open = True
        self.body_status: Verdict | None = None
        self.when_ok = rule.when is None
        self.wants_clock = rule.wants_clock
        self.done = False
        self.occ = 0
        self.findings: list[Finding] = NO_ITEMS  # made on the first finding (most rules pass)
        self.held: list[Finding] = NO_ITEMS
        self.na_reason = ""
        self.verdict: Verdict | None = None
        # uncertain (see _unsure_hit, _why_unsure): the hits heard with low confidence,
        # the evidence shown for the verdict, its detail (a node's reason: unsure_why)
        self.uocc = 0
        self.unsure: list[Evidence] = NO_ITEMS
        self.unsure_detail = ""

    # -------------------------------------------------------------- what nodes tell

    def every_utterance(self, on: bool) -> None:
        ev = self.evaluator
        if on:
            ev.hot |= self.rule.bit
        else:
            ev.hot &= ~self.rule.bit

    def trigger_retired(self) -> None:
        self.evaluator.dirty |= self.rule.bit

    # -------------------------------------------------------------- lifecycle

    def begin(self) -> None:
        rule = self.rule
        ev = self.evaluator
        if rule.direction is not None and ev.call.direction != rule.direction:
            self._na(rule.na_direction)
            return
        if rule.static_when is not None and not ev.statics[rule.static_when.slot]:
            self._na("不适用：条件（when）不成立")
            return
        if rule.when is not None:
            rule.when.start(self)
            if rule.when.found(self):
                self.when_ok = True
        self._body(rule.body.start(self))

    def _na(self, reason: str) -> None:
        self.evaluator.dirty |= self.rule.bit
        self.verdict = _NA
        self.na_reason = reason
        self.done = True
        self.body_open = False

    def in_window(self, x: UttCtx) -> bool:
        rule = self.rule
        fs = rule.first_seconds
        if fs is not None and x.start >= fs:
            return False
        ft = rule.first_turns
        if ft is not None:
            t = x.n if rule.roles is None else x.turn
            if t >= ft:
                return False
        return True

    def window_passed(self, x: UttCtx | None, clock: float) -> bool:
        fs = self.rule.first_seconds
        if fs is not None:
            if clock >= fs + self.evaluator.grace:
                return True
            roles = self.rule.roles
            if x is not None and roles is not None and x.role in roles:
                return x.start >= fs or self._turns_passed(x)
        return x is not None and self._turns_passed(x)

    def _turns_passed(self, x: UttCtx) -> bool:
        ft = self.rule.first_turns
        if ft is None:
            return False
        roles = self.rule.roles
        if roles is None:
            return x.n >= ft
        return x.role in roles and x.turn >= ft

    def on_utt(self, x: UttCtx) -> None:
        rule = self.rule
        w = rule.when
        if w is not None and not self.when_ok and w.wants_utts:
            keep = self.events
            self.events = False
            w.on_utt(self, x)
            self.events = keep
            if w.found(self):
                self._when_found()
        if self.body_open and rule.body_utts and (rule.roles is None or x.role in rule.roles):
            if rule.windowed and not self.in_window(x):
                return
            body = rule.body
            evs = body.on_utt(self, x)
            if evs:
                self._body(evs)
            if rule.require and body.found(self):
                self._pass_require()

    def on_tl(self, e: TEvent) -> None:
        rule = self.rule
        w = rule.when
        if w is not None and not self.when_ok and w.wants_timeline:
            w.on_tl(self, e)
            if w.found(self):
                self._when_found()
        if self.body_open and rule.body.wants_timeline and not rule.deferred:
            self._body(rule.body.on_tl(self, e))
            if rule.require and rule.body.found(self):
                self._pass_require()

    def on_clock(self, now: float) -> None:
        rule = self.rule
        w = rule.when
        if w is not None and not self.when_ok and w.wants_clock:
            w.on_clock(self, now)
            if w.found(self):
                self._when_found()
        if self.body_open and rule.body.wants_clock and not rule.deferred:
            self._body(rule.body.on_clock(self, now))
            if rule.require and rule.body.found(self):
                self._pass_require()

    def due(self) -> float:
        rule = self.rule
        d = INF
        if rule.when is not None and not self.when_ok and rule.when.wants_clock:
            d = rule.when.due(self)
        if self.body_open and rule.body.wants_clock:
            d = min(d, rule.body.due(self))
        return d

    def _pass_require(self) -> None:
        self.evaluator.dirty |= self.rule.bit
        self.body_status = _PASSED
        self.body_open = False
        if self.when_ok:
            self.done = True

    def _when_found(self) -> None:
        self.evaluator.dirty |= self.rule.bit
        self.when_ok = True
        if self.held:
            now = self.evaluator.clock
            for f in self.held:
                self._emit(f.evidence, f.message, now)
            self.held = NO_ITEMS
        if not self.body_open:
            self.done = True

    def _finding(self, evidence: tuple[Evidence, ...], detail: str) -> None:
        rule = self.rule
        msg = f"{rule.description}：{detail}" if detail else rule.description
        if self.when_ok:
            self._emit(evidence, msg, self.evaluator.clock)
        else:
            if not self.held:
                self.held = []
            self.held.append(Finding(self.evaluator.call_id, rule.id, rule.severity, msg, evidence))

    def _emit(self, evidence: tuple[Evidence, ...], msg: str, now: float) -> None:
        rule = self.rule
        if len(self.findings) >= rule.max_findings:
            return
        f = Finding(
            self.evaluator.call_id,
            rule.id,
            rule.severity,
            msg,
            evidence,
            fround(now, 3),
            rule.weight,
            rule.suggestion,
        )
        if not self.findings:
            self.findings = []
        self.findings.append(f)
        self.evaluator.out.append(f)

    def _body(self, evs: list[Found] | None) -> None:
        if not evs or not self.rule.forbid:
            return
        ev = self.evaluator
        if ev.n == 0 and ev.ended is not None:
            return  # the call is over and nobody was heard: nothing to judge (no speech)
        rule = self.rule
        tol = rule.tolerance
        low = self.evaluator.low_conf if rule.text_body else 0.0
        for evidence, detail in evs:
            if low > 0.0 and evidence.utterance_index is not None:
                c = self.evaluator.confidence_of(evidence)
                if c < low:
                    self._unsure_hit(evidence, detail, c)
                    continue
            self.occ += 1
            if self.occ > tol:
                self.body_status = _FAILED
                extra = f"（第 {self.occ} 次，允许 {tol} 次）" if tol else ""
                self._finding((evidence,), detail + extra)

    def close_body(self) -> None:
        """The scope window is over (or the call ended): decide the body."""
        if not self.body_open:
            return
        rule = self.rule
        ev = self.evaluator
        ev.dirty |= rule.bit
        if rule.deferred:
            totals = ev.turns
            roles = rule.roles
            hist = [x for x in ev.history if roles is None or x.role in roles]
            lt = rule.last_turns
            if lt is not None:
                hist = hist[-lt:]
            ls = rule.last_seconds
            for x in hist:
                x.role_total = totals[_ROLE_IX[x.role]]
                x.call_end = ev.call_end
                if ls is not None and x.end <= ev.call_end - ls:
                    continue
                if rule.body.wants_utts:
                    self._body(rule.body.on_utt(self, x))
        self._body(rule.body.close(self))
        self.body_open = False
        if rule.require:
            if rule.body.found(self):
                self.body_status = _PASSED
            else:
                self.occ = 1
                detail = rule.body.detail(self) or "未满足"
                if ev.n == 0 and (rule.text_body or rule.role_scoped):
                    # nobody was heard on the call (a dead line, a fax, tones, music on
                    # hold only): a missing phrase is not an agent's failure
                    self.body_status = _NA
                    self.na_reason = _NO_SPEECH
                elif self._verified_pass():
                    self.body_status = _PASSED
                    self.occ = 0
                elif self._why_unsure(detail):
                    self.body_status = _UNCERTAIN
                else:
                    self.body_status = _FAILED
                    self._finding(self._window_evidence(), detail)
        elif self.body_status is None:
            if self.uocc and self.occ + self.uocc > rule.tolerance:
                # every hit beyond the tolerance was heard with low confidence
                self.body_status = _UNCERTAIN
                self.unsure_detail = "待复核（识别置信度低）：" + self.unsure_detail
            else:
                self.body_status = _PASSED
        if self.when_ok:
            self.done = True

    # ------------------------------------------------------------ verified

    def _verified_pass(self) -> bool:
        """Whether a ``require`` rule about to fail is met once the phrases a targeted
        second decode verified (``Utterance.verified``) are read with its scope's
        utterances: the body is run again over the scope, each verified utterance seen as
        its text followed by those phrases. Otherwise the rule and its scope are noted
        (:attr:`CallEvaluator.unmet`) for such a decode. Only ``require`` rules get here:
        a verified phrase never makes a banned phrase appear. Runs only when the rule
        would fail (rare)."""
        rule = self.rule
        if not rule.text_body:
            return False
        ev = self.evaluator
        scope = self._scope_utts()
        verified = False
        for x in scope:
            if x.u.verified:
                verified = True
                break
        if verified:
            body = rule.body
            rerun = RuleRun(rule, ev)
            body.start(rerun)
            ix = ev.plan.index
            for x in scope:
                u = x.u
                if u.verified:
                    text = "，".join((u.text, *u.verified))
                    y = UttCtx(
                        replace(u, text=text), ix.analyse(text), x.turn, x.n, ev, x.role,
                        x.start, x.end,
                    )  # fmt: skip
                    y.role_total = x.role_total
                    y.call_end = x.call_end
                    body.on_utt(rerun, y)
                else:
                    body.on_utt(rerun, x)
            body.close(rerun)
            if body.found(rerun):
                return True
        ev.unmet.append((rule.id, tuple([x.u.index for x in scope])))
        return False

    # ------------------------------------------------------------ uncertain

    def _unsure_hit(self, evidence: Evidence, detail: str, confidence: float) -> None:
        """A forbidden hit in an utterance heard with low confidence: shown on the verdict,
        never a finding, counted apart from the hits that fail the rule."""
        self.uocc += 1
        if len(self.unsure) >= self.rule.max_findings:
            return
        if not self.unsure:
            self.unsure = []
        self.unsure.append(evidence)
        note = f"{detail}（第 {evidence.utterance_index} 句，置信度 {confidence:.2f}）"
        self.unsure_detail = f"{self.unsure_detail}；{note}" if self.unsure_detail else note

    def roles_unknown(self) -> bool:
        """The rule is scoped to the agent or the customer, no utterance of its roles was
        heard, but utterances of an unknown speaker were (a mono recording)."""
        roles = self.rule.roles
        if not self.rule.role_scoped or roles is None:
            return False
        rs = self.evaluator.stats.roles
        if rs[2].count == 0:
            return False
        return all(not rs[_ROLE_IX[r]].count for r in roles)

    def _why_unsure(self, detail: str) -> bool:
        """Whether a ``require`` rule about to fail is uncertain instead (then with its
        detail and evidence set): the roles are unknown, a node said so (a verdict it
        depends on is uncertain), or an utterance of the rule's roles in its scope was
        heard with low confidence. Runs only when the rule fails (rare)."""
        if self.roles_unknown():
            self.unsure_detail = _ROLES_UNKNOWN
            return True
        if self.unsure_why:
            self.unsure_detail = f"待复核：{detail}（{self.unsure_why}）"
            return True
        low = self.evaluator.low_conf
        if low <= 0.0 or not self.rule.text_body:
            return False
        weak = [x for x in self._scope_utts() if x.u.confidence < low]
        if not weak:
            return False
        notes = [
            f"第 {x.u.index} 句（置信度 {x.u.confidence:.2f}）“{x.u.text}”"
            for x in weak[:_MAX_SEEN]
        ]
        self.unsure = [x.evidence() for x in weak[:_MAX_SEEN]]
        self.unsure_detail = f"待复核（识别置信度低）：{detail}；" + "；".join(notes)
        return True

    def _scope_utts(self) -> list[UttCtx]:
        """The utterances of the rule's roles in its scope window (the whole call without
        one)."""
        rule = self.rule
        ev = self.evaluator
        roles = rule.roles
        if rule.windowed:
            return [
                x
                for x in ev.seen_in_window
                if (roles is None or x.role in roles) and self.in_window(x)
            ]
        hist = [x for x in ev.history if roles is None or x.role in roles]
        lt = rule.last_turns
        if lt is not None:
            hist = hist[-lt:]
        ls = rule.last_seconds
        if ls is not None:
            hist = [x for x in hist if x.end > ev.call_end - ls]
        return hist

    def _window_evidence(self) -> tuple[Evidence, ...]:
        fs = self.rule.first_seconds
        ev = self.evaluator
        if self.rule.last_seconds is not None or self.rule.last_turns is not None:
            return self._last_window_evidence()
        if fs is None and self.rule.first_turns is None:
            return (Evidence(start=0.0, end=ev.clock),)
        roles = self.rule.roles
        seen: list[Evidence] = []  # the first utterances of the window
        for x in ev.seen_in_window:
            if (roles is None or x.role in roles) and self.in_window(x):
                seen.append(x.evidence())
                if len(seen) >= _MAX_SEEN:
                    break
        if not seen:
            end = fs if fs is not None else ev.clock
            return (Evidence(start=0.0, end=min(end, ev.clock)),)
        return tuple(seen)

    def _last_window_evidence(self) -> tuple[Evidence, ...]:
        """A ``last_seconds`` / ``last_turns`` window's evidence: the turns of the rule's
        roles in it (its last :data:`_MAX_WINDOW`), what a reviewer reads to see the phrase
        missing; the window's span when none of those roles spoke in it."""
        scope = self._scope_utts()
        if scope:
            return tuple([x.evidence() for x in scope[-_MAX_WINDOW:]])
        ev = self.evaluator
        ls = self.rule.last_seconds
        end = ev.call_end
        return (Evidence(start=max(0.0, end - ls) if ls is not None else 0.0, end=end),)

    def finish(self) -> None:
        if self.verdict is not None:
            return
        rule = self.rule
        if rule.when is not None and not self.when_ok:
            rule.when.close(self)
            if rule.when.found(self):
                self._when_found()
        self.close_body()
        if not self.when_ok:
            self.verdict = _NA
            self.na_reason = "不适用：" + (rule.when.detail(self) if rule.when else "")
            self.held = NO_ITEMS
        else:
            self.verdict = self.body_status or _PASSED
        if (
            rule.role_scoped
            and self.verdict is not _FAILED
            and self.evaluator.stats.roles[2].count  # an unknown speaker was heard at all
            and self.roles_unknown()
        ):
            # nothing of the rule's roles was heard: neither a pass nor not applicable
            self.verdict = _UNCERTAIN
            self.unsure_detail = _ROLES_UNKNOWN


class CallEvaluator(CallContext):
    """Evaluates one call incrementally. Not thread-safe; one per call."""

    #: tests: dispatch every utterance with all of its lazy atoms computed up front (the
    #: straightforward way) instead of only those of the rules still undecided
    reference = False

    def __init__(self, pack: Executable, call: CallInfo) -> None:
        super().__init__()
        self.plan = plan = pack.plan
        self.call = call
        self.grace = plan.grace
        self.max_utt = plan.max_utt
        self.ended: CallEnded | None = None
        self.out: list[Finding] = []
        self._all_findings: list[Finding] = []
        self.turns = [0, 0, 0]  # utterances so far per role index
        self.n = 0
        self.statics, self.holiday_atoms = plan.statics_of(call)
        self.low_conf = plan.low_conf
        self.timeline = (
            Timeline(len(call.channels), self.max_utt, plan.tl_interest)
            if plan.has_timeline
            else None
        )
        self.hot = (
            0  # rules that see every utterance for now (bit mask, see RuleRun.every_utterance)
        )
        self.seen_in_window: list[UttCtx] = []
        self.call_id = call.call_id
        self.runs = runs = [RuleRun(r, self) for r in plan.rules]
        self._windowed = [runs[i] for i in plan.windowed]
        self._max_window = plan.max_window
        self._clock_runs = [runs[i] for i in plan.clock_rules]
        self._tl_runs: dict[str, list[tuple[float, RuleRun]]] = {
            kind: [(thr, runs[i]) for thr, i in lst] for kind, lst in plan.tl_by_kind.items()
        }
        self._live = [0, 0, 0]  # live lazy parts per role index (bits: part numbers)
        # rules decided or with a stage seen since the live parts were last checked (bit
        # mask; all of them to start with)
        self.dirty = plan.part_rules
        self.history: list[UttCtx] = []
        for run in runs:
            run.begin()
        self._due = min((r.due() for r in self._clock_runs if not r.done), default=INF)
        self._verdicts: dict[str, Verdict] = {}
        #: ``require`` rules on utterances that were not met, with the indices of the
        #: utterances in their scope (what a verification decode would look at)
        self.unmet: list[tuple[str, tuple[int, ...]]] = []

    # ------------------------------------------------------------------ live API

    def feed(self, utt: Utterance) -> list[Finding]:
        """Process one utterance; returns the findings it decided."""
        plan = self.plan
        end = utt.end
        if end > self.clock:
            self.clock = end
        a = plan.index.analyse(utt.text)
        role = utt.role
        rix = _ROLE_IX[role]
        turns = self.turns
        turn = turns[rix]
        turns[rix] = turn + 1
        x = UttCtx(utt, a, turn, self.n, self, role, utt.start, end)
        self.n += 1
        self.stats.add(x, rix, len(a.mf))
        if self._windowed:
            if x.start < self._max_window:
                self.seen_in_window.append(x)
            self._close_windows(x)
        runs = self.runs
        # the rules to call, as a bit mask of rule indices (memoised on the analysis)
        if rix == 0:
            disp = a.disp0
            if disp < 0:
                disp = a.disp0 = plan.dispatch_for(a, 0)
        elif rix == 1:
            disp = a.disp1
            if disp < 0:
                disp = a.disp1 = plan.dispatch_for(a, 1)
        else:
            disp = a.disp2
            if disp < 0:
                disp = a.disp2 = plan.dispatch_for(a, rix)
        self.history.append(x)  # before the rules: a hit's confidence is looked up here
        if self.dirty:
            self._live_parts()
        live = self._live[rix]
        if self.reference:
            live = 0
            memo = a.memo
            if memo is None:
                memo = a.memo = {}
            got = memo.get(("full", role))
            if got is None:
                got = memo["full", role] = plan.full_dispatch(a, rix)
            disp = got
        if live:
            unknown = live & ~a.pknown
            if unknown:
                self._parts_miss(a, unknown)
            hits = live & a.phit
            if hits:
                disp |= plan.hit_rules(hits)
        disp |= self.hot
        i = 0
        while disp:  # in rule order
            if disp & 1:
                run = runs[i]
                if not run.done:
                    pause()
                    run.on_utt(x)
                    if run.wants_clock and not run.done:
                        d = run.due()
                        if d < self._due:
                            self._due = d
            disp >>= 1
            i += 1
        tl = self.timeline
        if tl is not None:
            evs = tl.push(x, self.clock)
            if evs:
                self._timeline(evs)
        if self.clock >= self._due:
            self._tick()
        out = self.out
        if not out:
            return []
        self.out = []
        self._all_findings.extend(out)
        return out

    def _live_parts(self) -> None:
        """The lazy trigger parts of rules still undecided (and EOAC-style stages not yet
        seen), per role: the parts of the rules marked ``dirty`` (decided, a stage seen)
        are checked again; a stale mask only dispatches more rules than needed, which is
        always safe."""
        m = self.dirty & self.plan.part_rules
        self.dirty = 0
        runs = self.runs
        parts_of = self.plan.parts_of
        live = self._live
        ri = 0
        while m:
            if m & 1:
                run = runs[ri]
                body = run.rule.body
                for p in parts_of[ri]:
                    si = p.body_part
                    if not run.done and (si < 0 or body.part_open(run, si)):
                        live[p.role_ix] |= p.bit
                    else:
                        live[p.role_ix] &= ~p.bit
            m >>= 1
            ri += 1

    def _parts_miss(self, a: Analysis, unknown: int) -> None:
        """Compute, in one prefiltered pass, the lazy trigger parts still live in this call
        for an utterance text that does not know them yet (mask ``unknown``)."""
        plan = self.plan
        ix = plan.index
        for key in plan.miss_groups(unknown):
            ix.ensure(a, key)
        spans = a.spans
        atoms_of = plan.part_atoms
        hit = 0
        k = 0
        m = unknown
        while m:
            if m & 1:
                for atom in atoms_of[k]:
                    if atom in spans:
                        hit |= 1 << k
                        break
            m >>= 1
            k += 1
        a.pknown |= unknown
        a.phit |= hit

    def _tick(self) -> None:
        due = INF
        for run in self._clock_runs:
            if not run.done:
                run.on_clock(self.clock)
                if not run.done:
                    due = min(due, run.due())
        self._due = due

    def advance(self, now: float) -> list[Finding]:
        """Time passed on the call clock without a new utterance."""
        if now > self.clock:
            self.clock = now
        if self._windowed:
            self._close_windows(None)
        if self.timeline is not None:
            self._timeline(self.timeline.release(self.clock))
        self._tick()
        return self._take()

    def end(self, ended: CallEnded) -> Scorecard:
        """End of call: decide everything left and return the scorecard."""
        self.ended = ended
        last = max(self.clock, ended.end)
        self.clock = last
        self.call_end = ended.end if ended.end > 0 else last
        if self.timeline is not None:
            self._timeline(self.timeline.flush())
        self._tick()
        for i in self.plan.order:
            run = self.runs[i]
            run.finish()
            assert run.verdict is not None
            self._verdicts[run.rule.id] = run.verdict
        self._take()
        card = self._scorecard()
        self._release()
        return card

    def _release(self) -> None:
        """Drop the per-call objects that point back at the evaluator (rule runs,
        utterance contexts, the timeline), so reference counting frees a finished call at
        once instead of leaving cycles to the garbage collector."""
        self.runs = []
        self.timeline = None
        self.history = []
        self.seen_in_window = []
        self._windowed = []
        self._clock_runs = []
        self._tl_runs = {}
        self.hot = 0

    # ------------------------------------------------------------------ internals

    def _take(self) -> list[Finding]:
        out = self.out
        if not out:
            return []
        self.out = []
        self._all_findings.extend(out)
        return out

    def _close_windows(self, x: UttCtx | None) -> None:
        keep = []
        for run in self._windowed:
            if run.body_open and not run.done and run.window_passed(x, self.clock):
                run.close_body()
            if run.body_open:
                keep.append(run)
        self._windowed = keep

    def _timeline(self, events: list[TEvent]) -> None:
        tl_runs = self._tl_runs
        for e in events:
            runs = tl_runs.get(e.kind)
            if runs is not None:
                for thr, run in runs:
                    if e.seconds >= thr and not run.done:
                        run.on_tl(e)

    def rule_ok(self, rule_id: str) -> bool:
        v = self._verdicts.get(rule_id)
        return v in (_PASSED, _NA)

    def rule_unsure(self, rule_id: str) -> bool:
        return self._verdicts.get(rule_id) is _UNCERTAIN

    def confidence_of(self, e: Evidence) -> float:
        """The confidence of the utterance evidence ``e`` points to (1.0 for a span); the
        latest utterances first (a hit is usually in the one just fed)."""
        idx = e.utterance_index
        if idx is None:
            return 1.0
        h = self.history
        k = len(h) - 1
        while k >= 0:
            u = h[k].u
            if u.index == idx and u.start == e.start:
                return u.confidence
            k -= 1
        return 1.0

    def role_ends(self) -> dict[Role, float]:
        ends: dict[Role, float] = {}
        ce = self.ended.channel_ends if self.ended is not None else ()
        if ce:
            for ch, t in enumerate(ce):
                if ch < len(self.call.channels):
                    r = self.call.channels[ch]
                    ends[r] = max(ends.get(r, 0.0), t)
        for role in (_AGENT, _CUSTOMER):
            if role not in ends:
                le = self.stats.last_end(role)
                if le is not None:
                    ends[role] = le
        return ends

    def _scorecard(self) -> Scorecard:
        plan = self.plan
        verdicts = []
        total = 0.0
        failed = False
        review = False
        for run in self.runs:
            rule = run.rule
            v = run.verdict or _PASSED
            if v is _PASSED:
                verdicts.append(rule.passed)
                continue
            if v is _UNCERTAIN:
                # no deduction, no fail: shown with what it would cost, for review
                review = True
                pending = fround(rule.deduction(max(run.occ + run.uocc, 1)), 2)
                verdicts.append(
                    RuleVerdict(
                        rule.id,
                        v,
                        rule.severity,
                        rule.weight,
                        rule.description,
                        0.0,
                        run.unsure_detail,
                        pending,
                        tuple(run.unsure),
                    )
                )
                continue
            d = 0.0
            detail = ""
            if v is _FAILED:
                d = rule.deduction(run.occ)
                total += d
                if rule.critical:
                    failed = True
                detail = run.findings[0].message if run.findings else ""
                if run.occ > 1:
                    detail = f"{run.occ} 次；" + detail
            elif v is _NA:
                detail = run.na_reason
            d = fround(d, 2)
            key = (rule.index, v, detail, d)
            cache = plan.verdict_cache
            rv = cache.get(key)
            if rv is None:
                rv = RuleVerdict(
                    rule.id, v, rule.severity, rule.weight, rule.description, d, detail
                )
                if len(cache) < 10_000:
                    cache[key] = rv
            verdicts.append(rv)
        score = score_from(total)
        return Scorecard(
            call_id=self.call_id,
            score=score,
            grade=plan.grade(score, failed),
            failed=failed,
            verdicts=tuple(verdicts),
            findings=tuple(self._all_findings),
            rule_pack=plan.name,
            rule_pack_version=plan.version,
            duration=fround(self.call_end, 3),
            extras=self._extras(),
            review=review,
        )

    def _extras(self) -> tuple[tuple[str, float], ...]:
        s = self.stats
        out: list[tuple[str, float]] = [
            ("agent_utterances", float(s.count(_AGENT))),
            ("customer_utterances", float(s.count(_CUSTOMER))),
        ]
        secs = s.seconds(_AGENT)
        if secs > 0:
            out.append(("agent_chars_per_minute", fround(s.chars(_AGENT) / secs * 60, 1)))
        lvl = s.level(_AGENT)
        if lvl is not None:
            out.append(("agent_level_dbfs", fround(lvl, 1)))
        tl = self.timeline
        if tl is not None:
            if tl.gaps:
                g = sorted(tl.gaps)
                out.append(("response_gap_max", fround(g[-1], 2)))
                out.append(("response_gap_p90", fround(g[min(int(0.9 * len(g)), len(g) - 1)], 2)))
            if tl.silences:
                out.append(("silence_total", fround(sum(tl.silences), 2)))
                out.append(("silence_max", fround(max(tl.silences), 2)))
            out.append(("talk_over_count", float(tl.overlaps)))
        return tuple(out)


def score_transcript(pack: Executable, transcript: Transcript) -> Scorecard:
    """Score a stored call: the live code path, fed in order of utterance end."""
    ev = CallEvaluator(pack, transcript.call)
    utts: Sequence[Utterance] = transcript.utterances
    if not _in_end_order(utts):
        utts = sorted(utts, key=_end_key)
    for u in utts:
        ev.feed(u)
    return ev.end(transcript.ended)


def score_unmet(
    pack: Executable, transcript: Transcript
) -> tuple[Scorecard, list[tuple[str, tuple[int, ...]]]]:
    """:func:`score_transcript`, and the ``require`` rules on utterances that were not met
    (failed or uncertain), each with the indices of the utterances in its scope."""
    ev = CallEvaluator(pack, transcript.call)
    utts: Sequence[Utterance] = transcript.utterances
    if not _in_end_order(utts):
        utts = sorted(utts, key=_end_key)
    for u in utts:
        ev.feed(u)
    card = ev.end(transcript.ended)
    return card, ev.unmet


def _in_end_order(utts: Sequence[Utterance]) -> bool:
    """Whether ``utts`` already are in the order :func:`_end_key` sorts them (stored
    transcripts usually are): a pass over the list instead of a sort with a key per item
    (one attribute read per utterance while the ends increase)."""
    prev: Utterance | None = None
    pend = -INF
    for u in utts:
        end = u.end
        if end != pend:
            if end < pend:
                return False
        elif prev is not None:
            if u.start != prev.start:
                if u.start < prev.start:
                    return False
            elif u.index < prev.index:
                return False
        prev = u
        pend = end
    return True


def _end_key(u: Utterance) -> tuple[float, float, int]:
    return (u.end, u.start, u.index)
