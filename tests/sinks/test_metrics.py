from __future__ import annotations

import shutil
import subprocess
import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from qa_pipeline.messages import Evidence, Finding, Role, Scorecard, Severity, Utterance
from qa_pipeline.metrics import PipelineMetrics, start_metrics_server


def _feed(m: PipelineMetrics) -> None:
    m.on_call_started("c1")
    m.on_call_started("c2")
    m.on_call_started("c2")  # idempotent
    m.on_call_ended("c1")
    utt = Utterance("c2", 0, 0, Role.AGENT, 1.0, 3.0, "您好")
    m.on_utterance(utt, asr_seconds=0.5)
    m.on_utterance(Utterance("c2", 1, 1, Role.CUSTOMER, 3.0, 4.0, "你好"), None)
    crit = Finding("c2", "BAN-POLICY", Severity.CRITICAL, "x", (Evidence(1.0, 3.0),), 3.0)
    m.on_finding(crit, latency_s=0.02)
    m.on_finding(Finding("c2", "COURT-NIN", Severity.MINOR, "y"), latency_s=None)
    m.on_scorecard(Scorecard("c2", score=42.0, grade="不满意", failed=True))
    m.on_scorecard(Scorecard("c3", score=95.0, grade="非常满意", failed=False, review=True))
    m.on_queue_depth("asr", 7)
    m.on_drop("vad", "queue_full", 2)
    m.on_sink_error("kafka", "unavailable")
    m.on_sink_delivered("kafka", 5)
    m.on_spool("kafka", 3, 300)


def test_observer_updates_metrics(registry: CollectorRegistry) -> None:
    m = PipelineMetrics(registry, stages=("vad", "asr"))
    _feed(m)
    v = registry.get_sample_value
    assert v("qa_active_calls") == 1
    assert v("qa_calls_total") == 2
    assert v("qa_calls_failed_total") == 1
    assert v("qa_calls_review_total") == 1  # an uncertain verdict: review, not failed
    assert v("qa_utterances_total", {"role": "agent"}) == 1
    assert v("qa_utterances_total", {"role": "customer"}) == 1
    assert v("qa_asr_rtf_count") == 1 and v("qa_asr_rtf_sum") == pytest.approx(0.25)
    assert v("qa_findings_total", {"rule_id": "BAN-POLICY", "severity": "critical"}) == 1
    assert v("qa_findings_total", {"rule_id": "COURT-NIN", "severity": "minor"}) == 1
    assert v("qa_last_critical_finding_timestamp_seconds", {"rule_id": "BAN-POLICY"}) > 0
    assert v("qa_finding_latency_seconds_count") == 1
    assert v("qa_call_score_bucket", {"le": "50.0"}) == 1
    assert v("qa_call_score_bucket", {"le": "40.0"}) == 0
    assert v("qa_queue_depth", {"stage": "asr"}) == 7
    assert v("qa_queue_depth", {"stage": "vad"}) == 0
    assert v("qa_dropped_total", {"stage": "vad", "reason": "queue_full"}) == 2
    assert v("qa_sink_errors_total", {"sink": "kafka", "reason": "unavailable"}) == 1
    assert v("qa_sink_events_total", {"sink": "kafka"}) == 5
    assert v("qa_spool_events", {"sink": "kafka"}) == 3
    assert v("qa_spool_bytes", {"sink": "kafka"}) == 300


def test_registries_are_independent() -> None:
    a, b = CollectorRegistry(), CollectorRegistry()
    PipelineMetrics(a).on_call_started("x")
    PipelineMetrics(b)
    assert a.get_sample_value("qa_calls_total") == 1
    assert b.get_sample_value("qa_calls_total") == 0


def _scrape(registry: CollectorRegistry) -> str:
    server = start_metrics_server(registry, "127.0.0.1", 0)
    try:
        with urllib.request.urlopen(server.url, timeout=5) as resp:
            return resp.read().decode()
    finally:
        server.stop()


def test_metrics_server_serves_and_stops(registry: CollectorRegistry) -> None:
    _feed(PipelineMetrics(registry))
    body = _scrape(registry)
    assert 'qa_findings_total{rule_id="BAN-POLICY",severity="critical"} 1.0' in body
    assert "qa_active_calls 1.0" in body


@pytest.mark.integration
def test_promtool_check_metrics_is_clean(registry: CollectorRegistry) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: apt-get install -y --no-install-recommends prometheus")
    _feed(PipelineMetrics(registry))
    body = _scrape(registry)
    res = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, text=True, timeout=30
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == "" and res.stderr.strip() == "", res.stdout + res.stderr
