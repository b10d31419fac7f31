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
from typing import Any

from ..errors import ConfigError, Location
from ..yamlsrc import format_loc as _fmt_loc
from .lang.loader import Problem, default_pack_path, read_pack
from .lang.schema import PackSpec, RuleSpec, Settings
from .ops.compiler import CompileError, Compiler
from .runtime.plan import Plan, Rule
from .runtime.textindex import TextIndex

__all__ = ["LoadResult", "RulePack", "analyse_pack", "default_pack_path", "load_pack"]


@dataclass(eq=False)
class RulePack:
    """A validated, compiled rule pack: its header, where it was read from, and the
    runtime's plan (its rules and dispatch tables, made once; the engine keeps its memos
    there). Share it across calls."""

    name: str
    version: str
    declared_version: str
    description: str
    settings: Settings
    files: tuple[Path, ...]
    locations: dict[str, Location]
    plan: Plan = field(repr=False)

    @property
    def rules(self) -> list[Rule]:
        return self.plan.rules

    @property
    def index(self) -> TextIndex:
        return self.plan.index

    def rule(self, rule_id: str) -> Rule:
        return self.plan.rule(rule_id)

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
    compiled: list[Rule] = []
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
    version = f"{hdr.version}+{digest.hexdigest()[:12]}"
    plan = Plan(hdr.name, version, hdr.settings, compiled, ix, comp.statics, holiday_atoms, order)
    return RulePack(
        name=hdr.name,
        version=version,
        declared_version=hdr.version,
        description=hdr.description,
        settings=hdr.settings,
        files=tuple(files),
        locations={r.id: loc for r, loc in specs},
        plan=plan,
    )


def _topo(rules: list[Rule], problems: list[Problem], locs: dict[str, Location]) -> list[int]:
    by_id = {r.id: r for r in rules}
    order: list[int] = []
    state: dict[str, int] = {}

    def visit(r: Rule, stack: list[str]) -> None:
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


def load_pack(path: str | Path | None = None, settings: dict[str, Any] | None = None) -> RulePack:
    """Load a rule pack (a directory of YAML files or one file); ``None`` = the default pack.

    ``settings`` overrides the pack's settings (deep-merged; unknown names are errors).
    Raises :class:`~qa_pipeline.errors.ConfigError` listing every problem with file:line.
    """
    res = analyse_pack(path, settings)
    if res.problems or res.pack is None:
        raise ConfigError(res.problems or [(Location(str(path)), "cannot load pack")])
    return res.pack
