"""Load, validate and compile a rule pack: ``load_pack`` and :class:`RulePack`."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

import qa_pipeline

from ...errors import ConfigError, Location
from ...messages import Role
from ...yamlsrc import YMap, YSeq, load_yaml_file, validation_problems
from ...yamlsrc import format_loc as _fmt_loc
from ..ops.compiler import CompiledRule, CompileError, Compiler
from ..runtime.nodes import CStages, SNode
from ..runtime.textindex import TextIndex

if TYPE_CHECKING:
    from ..runtime.engine import PackTables
from .schema import PackSpec, RuleFile, RuleSpec, Settings

PACK_FILE = "pack.yaml"
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.]*)\}")

Problem = tuple[Location, str]


def _pack_candidates() -> list[Path]:
    return [
        # a source checkout (or editable install): the pack lives in the repository
        Path(qa_pipeline.__file__).resolve().parents[1] / "configs" / "rules",
        # an installed wheel: configs/rules/ shipped as package data (see README, packaging)
        Path(__file__).resolve().parents[1] / "default_pack",
        # ... or as setuptools data-files under the environment's prefix
        Path(sys.prefix) / "share" / "qa-pipeline" / "rules",
    ]


def default_pack_path() -> Path:
    """The default pack: ``configs/rules/`` of the repository this package lives in, else
    the copy installed with the package (package data ``qa_pipeline/rules/default_pack/``
    or data files ``<prefix>/share/qa-pipeline/rules/``)."""
    cands = _pack_candidates()
    for c in cands:
        if (c / PACK_FILE).is_file():
            return c
    return cands[0]


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


# ---------------------------------------------------------------------------- helpers


def _validation_problems(
    e: ValidationError, data: Any, path: str, prefix: tuple[int | str, ...] = ()
) -> list[Problem]:
    return validation_problems(e, data, path, prefix, label=_rule_id)


def _rule_id(data: Any, loc: tuple[int | str, ...]) -> str:
    """``"ID: "`` when ``loc`` is inside rule ``rules[i]`` that has a readable id."""
    if len(loc) < 3 or loc[0] != "rules" or not isinstance(loc[1], int):
        return ""
    rules = data.get("rules") if isinstance(data, dict) else None
    if not isinstance(rules, list) or not 0 <= loc[1] < len(rules):
        return ""
    rule = rules[loc[1]]
    rid = rule.get("id") if isinstance(rule, dict) else None
    return f"{rid}: " if isinstance(rid, str) and rid and loc[2] != "id" else ""


def _lookup(settings: dict[str, Any], ref: str) -> Any:
    node: Any = settings
    for part in ref.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KeyError(ref)
    return node


def _substitute(node: Any, settings: dict[str, Any], path: str, problems: list[Problem]) -> Any:
    """Replace ``${settings refs}`` in place (keeps YMap/YSeq line info)."""
    if isinstance(node, YMap):
        for k in list(node.keys()):
            node[k] = _subst_value(node[k], settings, path, node.key_lines.get(k, 0), problems)
        return node
    if isinstance(node, YSeq):
        items, lines = [], []
        for v, ln in zip(list(node), node.item_lines, strict=True):
            whole = isinstance(v, str) and _REF.fullmatch(v.strip())
            nv = _subst_value(v, settings, path, ln, problems)
            if whole and isinstance(nv, list):
                items.extend(nv)
                lines.extend([ln] * len(nv))
            else:
                items.append(nv)
                lines.append(ln)
        node[:] = items
        node.item_lines = lines
        return node
    return node


def _subst_value(
    v: Any, settings: dict[str, Any], path: str, line: int, problems: list[Problem]
) -> Any:
    if isinstance(v, (YMap, YSeq)):
        return _substitute(v, settings, path, problems)
    if not isinstance(v, str) or "${" not in v:
        return v
    m = _REF.fullmatch(v.strip())
    try:
        if m:
            return copy.deepcopy(_lookup(settings, m.group(1)))
        return _REF.sub(lambda mm: str(_lookup(settings, mm.group(1))), v)
    except KeyError as e:
        problems.append((Location(path, line), f"unknown setting ${{{e.args[0]}}}"))
        return v


def _merge(base: dict[str, Any], over: dict[str, Any], where: str, problems: list[Problem]) -> None:
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v, f"{where}{k}.", problems)
        elif where and k not in base:
            problems.append((Location("<settings override>"), f"unknown setting {where}{k}"))
        else:
            base[k] = v


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


# ---------------------------------------------------------------------------- loading


@dataclass
class LoadResult:
    """Everything learnt while loading, including problems (used by ``lint``)."""

    pack: RulePack | None
    problems: list[Problem]
    specs: list[tuple[RuleSpec, Location]]
    settings_raw: dict[str, Any]
    used_refs: set[str]


def pack_files(path: Path) -> tuple[Path | None, list[Path]]:
    """(pack header file, rule files) for a directory or a single YAML file."""
    if path.is_dir():
        header = path / PACK_FILE
        rules = sorted(
            p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.name != PACK_FILE
        )
        return (header if header.exists() else None), rules
    return path, []


def analyse_pack(
    path: str | Path | None = None, settings: dict[str, Any] | None = None
) -> LoadResult:
    """Load a pack collecting every problem instead of stopping at the first."""
    root = Path(path) if path is not None else default_pack_path()
    problems: list[Problem] = []
    specs: list[tuple[RuleSpec, Location]] = []
    used: set[str] = set()
    if not root.exists():
        problems.append((Location(str(root)), "no such file or directory"))
        return LoadResult(None, problems, specs, {}, used)
    header_path, rule_paths = pack_files(root)
    if header_path is None:
        problems.append((Location(str(root / PACK_FILE)), "missing pack.yaml (name, version)"))
        return LoadResult(None, problems, specs, {}, used)

    docs: list[tuple[Path, Any]] = []
    for p in [header_path, *rule_paths]:
        try:
            docs.append((p, load_yaml_file(p)))
        except ConfigError as e:
            problems.extend(e.problems)

    header: Any = docs[0][1] if docs and docs[0][0] == header_path else None
    if isinstance(header, dict) and isinstance(header.get("files"), list):
        rule_paths = _ordered(root, header, rule_paths, str(header_path), problems)
        rank = {p: i for i, p in enumerate([header_path, *rule_paths])}
        docs = sorted((d for d in docs if d[0] in rank), key=lambda d: rank[d[0]])
    spec_header: PackSpec | None = None
    settings_raw: dict[str, Any] = {}
    inline_rules: Any = None
    if header is not None:
        if not isinstance(header, dict):
            problems.append((Location(str(header_path), 1), "pack file must be a mapping"))
        else:
            inline_rules = header.get("rules")
            hdr = {k: v for k, v in header.items() if k != "rules"}
            raw_settings = _plain(hdr.get("settings") or {})
            if settings:
                _merge(raw_settings, _plain(settings), "", problems)
            settings_raw = raw_settings
            hdr_checked = YMap()
            hdr_checked.update(hdr)
            hdr_checked.key_lines = getattr(header, "key_lines", {})
            hdr_checked.line = getattr(header, "line", 0)
            if settings:
                hdr_checked["settings"] = raw_settings
            try:
                spec_header = PackSpec.model_validate(hdr_checked)
            except ValidationError as e:
                problems.extend(_validation_problems(e, hdr_checked, str(header_path)))

    sources: list[tuple[Path, Any]] = []
    if inline_rules is not None:
        sources.append((header_path, header))
    sources.extend(d for d in docs if d[0] != header_path)
    ref_settings = _plain(settings_raw)
    for p, data in sources:
        if not isinstance(data, dict):
            problems.append((Location(str(p), 1), "a rule file must be a mapping with 'rules:'"))
            continue
        body = _only_rules(data) if p == header_path and isinstance(data, YMap) else data
        text = json.dumps(_plain(body), ensure_ascii=False, default=str)
        used |= set(_REF.findall(text))
        _substitute(body, ref_settings, str(p), problems)
        try:
            rf = RuleFile.model_validate(body)
        except ValidationError as e:
            problems.extend(_validation_problems(e, body, str(p)))
            continue
        rules_node = body["rules"]
        for i, r in enumerate(rf.rules):
            specs.append((r, Location(str(p), rules_node.item_lines[i])))

    seen: dict[str, Location] = {}
    for r, loc in specs:
        if r.id in seen:
            problems.append((loc, f"duplicate rule id {r.id} (first at {seen[r.id]})"))
        else:
            seen[r.id] = loc
    if spec_header is None or problems:
        return LoadResult(None, problems, specs, settings_raw, used)
    pack = _compile(spec_header, specs, [header_path, *rule_paths], problems, settings)
    return LoadResult(pack, problems, specs, settings_raw, used)


def _ordered(
    root: Path, header: Any, found: list[Path], path: str, problems: list[Problem]
) -> list[Path]:
    """The rule files in the order of the pack's ``files:`` (each must exist), then any
    other rule file of the directory in file-name order (a file dropped in still loads)."""
    listed = header["files"]
    line = getattr(header, "key_lines", {}).get("files", 0)
    names = {p.name: p for p in found}
    out: list[Path] = []
    for name in listed:
        if not isinstance(name, str) or name not in names:
            problems.append((Location(path, line), f"files: no rule file {name!r} in {root}"))
        elif names[name] in out:
            problems.append((Location(path, line), f"files: {name} listed twice"))
        else:
            out.append(names[name])
    return out + [p for p in found if p not in out]


def _only_rules(header: YMap) -> YMap:
    m = YMap()
    m["rules"] = header["rules"]
    m.key_lines = {"rules": header.key_lines.get("rules", 0)}
    m.line = header.line
    return m


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
    from ..runtime.engine import PackTables

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
