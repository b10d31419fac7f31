"""Read a rule pack: YAML files -> validated specs and every problem with file:line.

This is the QA lead's language only: nothing here compiles a rule or evaluates a call
(:mod:`qa_pipeline.rules.pack` compiles what this reads into a ``RulePack``).
"""

from __future__ import annotations

import copy
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

import qa_pipeline

from ...errors import ConfigError, Location
from ...yamlsrc import YMap, YSeq, load_yaml_file, validation_problems
from .schema import PackSpec, RuleFile, RuleSpec

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


def pack_files(path: Path) -> tuple[Path | None, list[Path]]:
    """(pack header file, rule files) for a directory or a single YAML file."""
    if path.is_dir():
        header = path / PACK_FILE
        rules = sorted(
            p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.name != PACK_FILE
        )
        return (header if header.exists() else None), rules
    return path, []


@dataclass
class PackSource:
    """What reading a pack learnt: its header (``None`` when it is unusable), the rule
    specs with their locations, every problem, the raw settings, the ``${...}`` settings the
    rules refer to, and the files read (header first)."""

    header: PackSpec | None
    problems: list[Problem]
    specs: list[tuple[RuleSpec, Location]]
    settings_raw: dict[str, Any]
    used_refs: set[str]
    files: list[Path]


def read_pack(path: str | Path | None = None, settings: dict[str, Any] | None = None) -> PackSource:
    """Read and validate a pack collecting every problem instead of stopping at the first."""
    root = Path(path) if path is not None else default_pack_path()
    problems: list[Problem] = []
    specs: list[tuple[RuleSpec, Location]] = []
    used: set[str] = set()
    if not root.exists():
        problems.append((Location(str(root)), "no such file or directory"))
        return PackSource(None, problems, specs, {}, used, [])
    header_path, rule_paths = pack_files(root)
    if header_path is None:
        problems.append((Location(str(root / PACK_FILE)), "missing pack.yaml (name, version)"))
        return PackSource(None, problems, specs, {}, used, [])

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
    files = [header_path, *rule_paths]
    return PackSource(spec_header, problems, specs, settings_raw, used, files)


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
