"""Re-score outputs: ``results.jsonl``, ``results.csv``, ``results.xlsx``, ``diff.jsonl`` and
``report.html``.

``results.csv`` is written for Excel (UTF-8 with a byte-order mark, CRLF, formula-like text
neutralised) and ``results.xlsx`` holds the same calls plus one row per finding
(:mod:`qa_pipeline.exports`).

Every output lists calls by call id and holds no timestamps of the run, so an interrupted
and resumed run writes byte-identical files to an uninterrupted one.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from .. import exports
from ..exports import Column
from ..rules import RulePack
from ..store import Store, compact_json
from .html import render_report
from .summary import RescoreSummary, rule_info, uncertain_rules

CSV_COLUMNS = (
    Column("call_id", "call_id"),
    Column("status", "status"),
    Column("score", "score", "number"),
    Column("grade", "grade"),
    Column("failed", "failed", "bool"),
    Column("failed_rules", "failed_rules"),
    Column("findings", "findings", "int"),
    Column("agent_id", "agent_id"),
    Column("started", "started_at", "datetime"),
    Column("source", "source"),
    Column("error", "error"),
    Column("review", "review", "bool"),
    Column("uncertain_rules", "uncertain_rules"),
)


def write_outputs(
    store: Store,
    out: Path,
    summary: RescoreSummary,
    pack: RulePack,
    base: RulePack | None,
    wanted: set[str],
    targets: dict[str, str],
    *,
    xlsx: bool = True,
) -> tuple[dict[str, Path], dict[str, Any]]:
    out.mkdir(parents=True, exist_ok=True)
    rows = [r for r in store.results(summary.run_id) if r["call_id"] in wanted]
    for r in rows:
        if not r.get("source"):
            r["source"] = targets.get(r["call_id"]) or _error_source(r)
    paths = {
        "results.jsonl": out / "results.jsonl",
        "results.csv": out / "results.csv",
        "report.html": out / "report.html",
    }
    _write_jsonl(paths["results.jsonl"], rows, pack)
    exports.write_csv(paths["results.csv"], CSV_COLUMNS, map(exports.result_record, rows))
    if xlsx:
        paths["results.xlsx"] = out / "results.xlsx"
        exports.write_xlsx(paths["results.xlsx"], exports.result_sheets(rows))
    elif (out / "results.xlsx").exists():
        (out / "results.xlsx").unlink()  # not this run's
    diff: dict[str, Any] = {}
    base_rows: list[dict[str, Any]] | None = None
    if base is not None and summary.baseline_run_id:
        base_rows = [r for r in store.results(summary.baseline_run_id) if r["call_id"] in wanted]
        diff = compute_diff(rows, base_rows, pack, base)
        paths["diff.jsonl"] = out / "diff.jsonl"
        _write_diff(paths["diff.jsonl"], diff)
    else:
        stale = out / "diff.jsonl"
        if stale.exists():
            stale.unlink()
    html = render_report(rows, pack, base, diff, summary)
    _atomic_write(paths["report.html"], html)
    return paths, _diff_summary(diff)


def _error_source(r: dict[str, Any]) -> str:
    err = r.get("error") or ""
    return err.split(": ", 1)[0] if r.get("status") == "error" else ""


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _write_jsonl(path: Path, rows: list[dict[str, Any]], pack: RulePack) -> None:
    # Stored JSON columns are spliced in as they are (no parse + dump for 10,000 calls).
    pack_part = (
        f',"rule_pack":{json.dumps(pack.name)},"rule_pack_version":{json.dumps(pack.version)}'
    )
    lines = []
    for r in rows:
        head = {
            "call_id": r["call_id"],
            "status": r["status"],
            "error": r["error"],
            "score": r["score"],
            "grade": r["grade"],
            "failed": bool(r["failed"]) if r["failed"] is not None else None,
            "review": bool(uncertain_rules(r)) if r["status"] == "ok" else None,
            "agent_id": r["agent_id"],
            "started_at": r["started_at"],
            "source": r["source"],
            "transcript_key": r["transcript_key"] or None,
        }
        lines.append(
            compact_json(head)[:-1]
            + pack_part
            + f',"failed_rules":{r["failed_rules"] or "[]"}'
            + f',"uncertain_rules":{compact_json(uncertain_rules(r))}'
            + f',"verdicts":{r["verdicts"] or "{}"}'
            + f',"findings":{r["findings"] or "[]"}}}\n'
        )
    _atomic_write(path, "".join(lines))


def compute_diff(
    new: list[dict[str, Any]],
    old: list[dict[str, Any]],
    pack: RulePack,
    base: RulePack,
) -> dict[str, Any]:
    """Per rule, the calls it newly flags / no longer flags, and the calls where it newly is /
    no longer is ``uncertain``; grade and score changes.

    Only calls scored by both packs are compared ("flagged" = the rule's verdict is
    ``failed``). Evidence for every changed (call, rule) pair comes with it: the new pack's
    findings for a newly flagged call, the baseline's for a call no longer flagged.
    """
    old_by = {r["call_id"]: r for r in old if r["status"] == "ok"}
    rules_new = rule_info(pack)
    rules_old = rule_info(base)
    order = list(rules_new) + [r for r in rules_old if r not in rules_new]
    per_rule: dict[str, dict[str, list[str]]] = {rid: _no_changes() for rid in order}
    calls: list[dict[str, Any]] = []
    evidence: dict[tuple[str, str], dict[str, Any]] = {}
    for r in new:
        if r["status"] != "ok" or r["call_id"] not in old_by:
            continue
        o = old_by[r["call_id"]]
        cid = r["call_id"]
        fr_new = set(json.loads(r["failed_rules"] or "[]"))
        fr_old = set(json.loads(o["failed_rules"] or "[]"))
        newly = [x for x in order if x in fr_new and x not in fr_old]
        gone = [x for x in order if x in fr_old and x not in fr_new]
        un_new = set(uncertain_rules(r))
        un_old = set(uncertain_rules(o))
        newly_un = [x for x in order if x in un_new and x not in un_old]
        gone_un = [x for x in order if x in un_old and x not in un_new]
        grade_changed = r["grade"] != o["grade"]
        if (
            not newly
            and not gone
            and not newly_un
            and not gone_un
            and not grade_changed
            and r["score"] == o["score"]
        ):
            continue
        for key, ids in (
            ("newly_flagged", newly),
            ("no_longer_flagged", gone),
            ("newly_uncertain", newly_un),
            ("no_longer_uncertain", gone_un),
        ):
            for x in ids:
                per_rule.setdefault(x, _no_changes())[key].append(cid)
        if newly or gone:
            f_new = json.loads(r["findings"] or "[]")
            f_old = json.loads(o["findings"] or "[]")
            for x in newly:
                evidence[(cid, x)] = {"side": "new", "findings": _of(f_new, x)}
            for x in gone:
                evidence[(cid, x)] = {"side": "baseline", "findings": _of(f_old, x)}
        if newly_un:
            v_new = json.loads(r["verdicts"] or "{}")
            for x in newly_un:
                why = v_new[x][3] if len(v_new[x]) > 3 else ""
                evidence[(cid, x)] = {"side": "new", "findings": [], "uncertain": why}
        calls.append(
            {
                "call_id": cid,
                "agent_id": r.get("agent_id"),
                "started_at": r.get("started_at"),
                "newly_flagged": newly,
                "no_longer_flagged": gone,
                "old_score": o["score"],
                "new_score": r["score"],
                "old_grade": o["grade"],
                "new_grade": r["grade"],
                "old_failed": bool(o["failed"]),
                "new_failed": bool(r["failed"]),
                "newly_uncertain": newly_un,
                "no_longer_uncertain": gone_un,
                "old_review": bool(un_old),
                "new_review": bool(un_new),
            }
        )
    rules = []
    for rid in order:
        d = per_rule.get(rid, _no_changes())
        info = rules_new.get(rid) or rules_old.get(rid) or {}
        rules.append(
            {
                "rule_id": rid,
                "description": info.get("description", ""),
                "window": info.get("window"),
                "in_new": rid in rules_new,
                "in_baseline": rid in rules_old,
                "changed_definition": _changed(rid, rules_new, rules_old),
                "newly_flagged": d["newly_flagged"],
                "no_longer_flagged": d["no_longer_flagged"],
                "newly_uncertain": d["newly_uncertain"],
                "no_longer_uncertain": d["no_longer_uncertain"],
            }
        )
    grade_moves = Counter(
        (c["old_grade"], c["new_grade"]) for c in calls if c["old_grade"] != c["new_grade"]
    )
    return {
        "compared": sum(1 for r in new if r["status"] == "ok" and r["call_id"] in old_by),
        "baseline": f"{base.name} {base.version}",
        "new": f"{pack.name} {pack.version}",
        "rules": rules,
        "calls": calls,
        "evidence": evidence,
        "grade_moves": sorted(grade_moves.items(), key=lambda kv: (-kv[1], kv[0])),
    }


def _no_changes() -> dict[str, list[str]]:
    return {
        "newly_flagged": [],
        "no_longer_flagged": [],
        "newly_uncertain": [],
        "no_longer_uncertain": [],
    }


def _changed(rid: str, a: dict[str, Any], b: dict[str, Any]) -> bool:
    return rid in a and rid in b and a[rid] != b[rid]


def _of(findings: list[dict[str, Any]], rule_id: str) -> list[dict[str, Any]]:
    return [f for f in findings if f.get("rule_id") == rule_id]


def _write_diff(path: Path, diff: dict[str, Any]) -> None:
    lines = [
        compact_json(
            {
                "type": "summary",
                "baseline": diff["baseline"],
                "new": diff["new"],
                "compared": diff["compared"],
                "changed_calls": len(diff["calls"]),
            }
        )
    ]
    for r in diff["rules"]:
        if (
            r["newly_flagged"]
            or r["no_longer_flagged"]
            or r["newly_uncertain"]
            or r["no_longer_uncertain"]
        ):
            lines.append(compact_json({"type": "rule", **r}))
    ev = diff["evidence"]
    for c in diff["calls"]:
        rec = dict(c)
        rec["evidence"] = {
            rid: ev[(c["call_id"], rid)]
            for rid in c["newly_flagged"] + c["no_longer_flagged"] + c["newly_uncertain"]
            if (c["call_id"], rid) in ev
        }
        lines.append(compact_json({"type": "call", **rec}))
    _atomic_write(path, "\n".join(lines) + "\n")


def _diff_summary(diff: dict[str, Any]) -> dict[str, Any]:
    if not diff:
        return {}
    return {
        "compared": diff["compared"],
        "changed_calls": len(diff["calls"]),
        "rules": {
            r["rule_id"]: (len(r["newly_flagged"]), len(r["no_longer_flagged"]))
            for r in diff["rules"]
            if r["newly_flagged"] or r["no_longer_flagged"]
        },
        "grade_changes": sum(1 for c in diff["calls"] if c["old_grade"] != c["new_grade"]),
    }
