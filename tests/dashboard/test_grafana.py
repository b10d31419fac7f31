"""deploy/grafana/qa-pipeline.json: it parses, has the panels the issue lists, and every
PromQL query names only metrics the service exports (from a fresh registry)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from qa_pipeline.metrics import PipelineMetrics
from qa_pipeline.notify import NotifyMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "qa-pipeline.json"

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or"}
PROMQL_WORDS |= {"unless", "bool", "offset", "inf", "nan"}


def exported_series() -> set[str]:
    registry = CollectorRegistry()
    PipelineMetrics(registry, stages=("asr",))
    NotifyMetrics(registry)
    names: set[str] = set()
    for fam in registry.collect():
        if fam.type == "counter":
            names.add(fam.name + "_total")
        elif fam.type == "histogram":
            names.update(fam.name + s for s in ("_bucket", "_sum", "_count"))
        else:
            names.add(fam.name)
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (label matchers, ranges, grouping
    clauses, functions, keywords and numbers left out)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\$\w+", " ", e)
    e = re.sub(r"(?<![\w:])\d+(\.\d+)?([eE][+-]?\d+)?", " ", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        rest = e[m.end() :].lstrip()
        if rest.startswith("("):  # a function or aggregation
            continue
        if m.group(0).lower() in PROMQL_WORDS:
            continue
        names.add(m.group(0))
    return names


def all_panels(doc: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in doc["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def queries(doc: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for p in all_panels(doc):
        for t in p.get("targets", []):
            out.append((p["title"], t["expr"]))
    for v in doc["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"label_values\((.*),\s*\w+\)", q)
            out.append((f"variable {v['name']}", m.group(1) if m else q))
    return out


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def test_parses_and_is_a_dashboard(doc: dict[str, Any]) -> None:
    assert doc["uid"] == "qa-pipeline" and doc["title"]
    assert 36 <= doc["schemaVersion"] <= 41
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in all_panels(doc)]
    assert len(ids) == len(set(ids))
    for p in all_panels(doc):
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}"
            assert p["targets"], p["title"]
            refs = [t["refId"] for t in p["targets"]]
            assert len(refs) == len(set(refs))


def test_has_the_panels(doc: dict[str, Any]) -> None:
    exprs = " ".join(e for _, e in queries(doc))
    wanted = {
        "active calls": "qa_active_calls",
        "calls/min": "qa_calls_total",
        "score distribution": "qa_call_score_bucket",
        "findings by rule": "by (rule_id) (rate(qa_findings_total",
        "finding latency": "qa_finding_latency_seconds_bucket",
        "drops": "by (stage, reason) (increase(qa_dropped_total",
        "spool": "qa_spool_events",
        "sink errors": "qa_sink_errors_total",
    }
    for what, needle in wanted.items():
        assert needle in exprs, what
    assert "histogram_quantile(0.95" in exprs and "histogram_quantile(0.5" in exprs


def test_every_query_names_an_exported_metric(doc: dict[str, Any]) -> None:
    exported = exported_series()
    assert "qa_calls_total" in exported and "qa_call_score_bucket" in exported
    seen: set[str] = set()
    for title, expr in queries(doc):
        names = metric_names(expr)
        assert names, f"{title}: no metric in {expr!r}"
        unknown = names - exported
        assert not unknown, f"{title}: {sorted(unknown)} not exported (query {expr!r})"
        seen |= names
    assert len(seen) >= 15


def test_the_checker_catches_unknown_names() -> None:
    assert metric_names(
        'histogram_quantile(0.95, sum by (le) (rate(qa_x_bucket{job=~"$job"}[$__rate_interval])))'
    ) == {"qa_x_bucket"}
    assert metric_names("sum(rate(a_total[5m])) / clamp_min(sum(rate(b_total[5m])), 1e-9)") == {
        "a_total",
        "b_total",
    }
    assert metric_names('time() - max by (rule_id) (qa_last{x="y"}) < 300') == {"qa_last"}
