"""Load a rule pack and compile it: ``load_pack`` and :class:`RulePack`.

Above the language (:mod:`.lang`: the pack read into specs and problems), the operators'
compile steps (:mod:`.ops`) and the runtime (:mod:`.runtime`: the nodes, text index and
tables the compiled pack is made of).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, Location
from ..messages import Role
from ..yamlsrc import format_loc as _fmt_loc
from .lang.loader import Problem, default_pack_path, read_pack
from .lang.schema import PackSpec, RuleSpec, Settings
from .ops.compiler import CompiledRule, CompileError, Compiler
from .runtime.nodes import CStages, SNode
from .runtime.textindex import TextIndex

if TYPE_CHECKING:
    from .runtime.engine import PackTables

__all__ = ["LoadResult", "RulePack", "analyse_pack", "default_pack_path", "load_pack"]


@dataclass(eq=False)
class RulePack:
    """A validated, compiled rule pack. Immutable after loading (the engine keeps its
    memos inside ``tables`` and ``verdict_cache``); share it across calls."""

    name: str
    version: str
    declared_version: str
    description: str
    settings: Settings
    rules: tuple[CompiledRule, ...]
    files: tuple[Path, ...]
    index: TextIndex
    statics: tuple[SNode, ...]
    holiday_atoms: dict[tuple[int, float], tuple[int, ...]]
    order: tuple[int, ...]
    locations: dict[str, Location]
    always: dict[Role, tuple[int, ...]] = field(default_factory=dict)
    by_atom: dict[Role, dict[int, tuple[int, ...]]] = field(default_factory=dict)
    timeline_rules: tuple[int, ...] = ()
    clock_rules: tuple[int, ...] = ()
    tl_by_kind: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    tl_interest: dict[str, float] = field(default_factory=dict)
    verdict_cache: dict[Any, Any] = field(default_factory=dict)
    windowed: tuple[int, ...] = ()  # rules with a first_* window
    # exact-phrase (keyword) atoms only: atom -> rules, per role
    kw_by_atom: dict[Role, dict[int, tuple[int, ...]]] = field(default_factory=dict)
    # per role, in rule order: (part key, rule index, stage index or -1, body slot) for the
    # lazy atoms (fuzzy, regex, similar, entity) of each rule's trigger; a stage part
    # retires once its stage is seen, every part once its rule is done
    lazy_parts: dict[Role, tuple[tuple[Any, int, int, int], ...]] = field(default_factory=dict)
    part_atoms: dict[Any, tuple[int, ...]] = field(default_factory=dict)
    max_window: float = 0.0  # utterances starting later are never in a first_* window
    # the evaluator's tables (bit masks, memos), made once when the pack is loaded
    tables: PackTables = field(init=False, repr=False)

    def full_dispatch(self, a: Any, role: Role) -> tuple[int, ...]:
        """Every rule an utterance can matter to, all lazy atoms computed (reference)."""
        by_atom = self.by_atom[role]
        idx = set(self.always[role])
        self.index.ensure(a, role)
        for atom in a.spans:
            hit = by_atom.get(atom)
            if hit:
                idx.update(hit)
        return tuple(sorted(idx))

    def rule(self, rule_id: str) -> CompiledRule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    @property
    def rule_ids(self) -> list[str]:
        return [r.id for r in self.rules]

    def grade_label(self, grade: str) -> str:
        """English label of a grade name (``满意`` -> ``satisfied``)."""
        for g in self.settings.grades:
            if g.name == grade:
                return g.label
        return grade


@dataclass
class LoadResult:
    """Everything learnt while loading, including problems (used by ``lint``)."""

    pack: RulePack | None
    problems: list[Problem]
    specs: list[tuple[RuleSpec, Location]]
    settings_raw: dict[str, Any]
    used_refs: set[str]


def analyse_pack(
    path: str | Path | None = None, settings: dict[str, Any] | None = None
) -> LoadResult:
    """Load a pack collecting every problem instead of stopping at the first (compile
    errors included)."""
    src = read_pack(path, settings)
    problems = src.problems
    if src.header is None or problems:
        return LoadResult(None, problems, src.specs, src.settings_raw, src.used_refs)
    pack = _compile(src.header, src.specs, src.files, problems, settings)
    return LoadResult(pack, problems, src.specs, src.settings_raw, src.used_refs)


def _compile(
    hdr: PackSpec,
    specs: list[tuple[RuleSpec, Location]],
    files: list[Path],
    problems: list[Problem],
    overrides: dict[str, Any] | None,
) -> RulePack | None:
    ix = TextIndex()
    comp = Compiler(ix, hdr.settings)
    ids = {r.id for r, _ in specs}
    compiled: list[CompiledRule] = []
    enabled = [(r, loc) for r, loc in specs if r.enabled]
    for i, (spec, loc) in enumerate(enabled):
        try:
            cr = comp.rule(spec, i)
        except CompileError as e:
            problems.append((loc, f"{spec.id}: {_fmt_loc(e.path)}: {e}"))
            continue
        for d in cr.deps:
            if d not in ids:
                problems.append((loc, f"{spec.id}: verdicts refers to unknown rule {d}"))
            elif d not in {r.id for r, _ in enabled}:
                problems.append((loc, f"{spec.id}: verdicts refers to disabled rule {d}"))
        compiled.append(cr)
    order = _topo(compiled, problems, {r.id: loc for r, loc in specs})
    holiday_atoms: dict[tuple[int, float], tuple[int, ...]] = {}
    for hi, h in enumerate(hdr.settings.holidays):
        for thr in sorted(comp.holiday_thresholds):
            holiday_atoms[(hi, thr)] = tuple(ix.fuzzy(g, thr) for g in h.greeting)
    if problems:
        return None
    ix.finish()
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode())
        digest.update(f.read_bytes())
    if overrides:
        digest.update(json.dumps(overrides, sort_keys=True, default=str).encode())
    pack = RulePack(
        name=hdr.name,
        version=f"{hdr.version}+{digest.hexdigest()[:12]}",
        declared_version=hdr.version,
        description=hdr.description,
        settings=hdr.settings,
        rules=tuple(compiled),
        files=tuple(files),
        index=ix,
        statics=tuple(comp.statics),
        holiday_atoms=holiday_atoms,
        order=tuple(order),
        locations={r.id: loc for r, loc in specs},
    )
    _build_dispatch(pack)
    from .runtime.engine import PackTables

    pack.tables = PackTables(pack)
    return pack


def _topo(
    rules: list[CompiledRule], problems: list[Problem], locs: dict[str, Location]
) -> list[int]:
    by_id = {r.id: r for r in rules}
    order: list[int] = []
    state: dict[str, int] = {}

    def visit(r: CompiledRule, stack: list[str]) -> None:
        s = state.get(r.id, 0)
        if s == 2:
            return
        if s == 1:
            cyc = " -> ".join([*stack[stack.index(r.id) :], r.id])
            problems.append((locs[r.id], f"verdicts cycle: {cyc}"))
            return
        state[r.id] = 1
        for d in r.deps:
            if d in by_id:
                visit(by_id[d], [*stack, r.id])
        state[r.id] = 2
        order.append(r.index)

    for r in rules:
        visit(r, [])
    return order


def _build_dispatch(pack: RulePack) -> None:
    for role in Role:
        always: list[int] = []
        by_atom: dict[int, list[int]] = {}
        for r in pack.rules:
            if role not in r.utt_roles:
                continue
            trig = r.triggers[role]
            if trig is None:
                always.append(r.index)
            else:
                for atom in trig:
                    by_atom.setdefault(atom, []).append(r.index)
        pack.always[role] = tuple(always)
        pack.by_atom[role] = {a: tuple(v) for a, v in by_atom.items()}
        pack.index.set_group(role, set(by_atom))
        ix = pack.index
        pack.kw_by_atom[role] = {a: tuple(v) for a, v in by_atom.items() if ix.kind(a) == "keyword"}
        parts: list[tuple[Any, int, int, int]] = []
        for r in pack.rules:
            if role not in r.utt_roles or r.triggers[role] is None:
                continue
            for k, (stage, atoms) in enumerate(_trigger_parts(r, role)):
                lazy = tuple(sorted(a for a in atoms if ix.kind(a) != "keyword"))
                if not lazy:
                    continue
                key = ("part", role.value, r.index, k)
                pack.part_atoms[key] = lazy
                ix.set_group(key, set(lazy))
                parts.append((key, r.index, stage, r.body.slot))
        pack.lazy_parts[role] = tuple(parts)
    pack.timeline_rules = tuple(r.index for r in pack.rules if r.wants_timeline)
    for r in pack.rules:
        for kind, thr in r.tl_interest.items():
            pack.tl_by_kind.setdefault(kind, []).append((thr, r.index))
            pack.tl_interest[kind] = min(thr, pack.tl_interest.get(kind, thr))
    pack.clock_rules = tuple(r.index for r in pack.rules if r.wants_clock)
    pack.windowed = tuple(r.index for r in pack.rules if r.windowed)
    grace = pack.settings.window_grace_seconds
    pack.max_window = max(
        [(pack.rules[i].spec.scope.first_seconds or 0.0) + grace for i in pack.windowed] + [0.0]
    )


def _trigger_parts(r: CompiledRule, role: Role) -> list[tuple[int, frozenset[int]]]:
    """The rule's trigger for ``role`` split into parts that retire separately:
    ``(stage index or -1, atoms)``; the union of the atoms is ``r.triggers[role]``."""
    out: list[tuple[int, frozenset[int]]] = []
    if r.when is not None and r.when.wants_utts:
        assert r.when.trigger is not None
        out.append((-1, r.when.trigger))
    body = r.body
    if body.wants_utts and not r.deferred and (r.roles is None or role in r.roles):
        if isinstance(body, CStages):
            for i, m in enumerate(body.matchers):
                assert m.trigger is not None
                out.append((i, m.trigger))
        else:
            assert body.trigger is not None
            out.append((-1, body.trigger))
    return out


def load_pack(path: str | Path | None = None, settings: dict[str, Any] | None = None) -> RulePack:
    """Load a rule pack (a directory of YAML files or one file); ``None`` = the default pack.

    ``settings`` overrides the pack's settings (deep-merged; unknown names are errors).
    Raises :class:`~qa_pipeline.errors.ConfigError` listing every problem with file:line.
    """
    res = analyse_pack(path, settings)
    if res.problems or res.pack is None:
        raise ConfigError(res.problems or [(Location(str(path)), "cannot load pack")])
    return res.pack
