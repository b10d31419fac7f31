"""A real Prometheus scrapes a running pipeline process; the critical-finding alert fires,
reaches Alertmanager (its API) and the webhook receiver. promtool checks rules and a scrape."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from replayed_calls import CALLS_DIR

ROOT = Path(__file__).resolve().parents[2]


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def wait_until(pred: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.5)


def test_promtool_check_rules_and_config() -> None:
    promtool = shutil.which("promtool")
    amtool = shutil.which("amtool")
    assert promtool and amtool, "apt-get install -y prometheus prometheus-alertmanager"
    deploy = ROOT / "deploy" / "prometheus"
    for cmd in (
        [promtool, "check", "rules", str(deploy / "alerts.yml")],
        [promtool, "test", "rules", str(deploy / "alerts_test.yml")],  # e.g. QAEventsDropped
        [promtool, "check", "config", str(deploy / "prometheus.yml")],
        [amtool, "check-config", str(deploy / "alertmanager.yml")],
    ):
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, f"{cmd}: {res.stdout}{res.stderr}"


def test_critical_finding_alert_reaches_alertmanager_and_webhook(
    prom_stack: Any, replay: Any, tmp_path: Path
) -> None:
    r = replay(
        "--transcripts", str(CALLS_DIR),
        "--jsonl", str(tmp_path / "events"),
        "--metrics-port", str(prom_stack.metrics_port),
        "--pace", "0.02",
        "--hold", "inf",
    )  # fmt: skip
    ready = r.wait_for("ready", timeout=30)
    assert ready["metrics_port"] == prom_stack.metrics_port
    r.wait_for("done", timeout=60)

    # promtool on a real scrape of the running process
    url = f"http://127.0.0.1:{prom_stack.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = resp.read().decode()
    assert 'qa_findings_total{rule_id="BAN-POLICY",severity="critical"} 2.0' in body
    res = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, text=True, timeout=30
    )
    assert res.returncode == 0 and not (res.stdout + res.stderr).strip(), res.stdout + res.stderr

    # Prometheus scraped it and the rule fires
    def scraped() -> bool:
        q = get_json(f"{prom_stack.prometheus}/api/v1/query?query=qa_calls_total")
        return any(float(x["value"][1]) == 3 for x in q["data"]["result"])

    wait_until(scraped, 30, "Prometheus to scrape qa_calls_total == 3")

    def firing() -> list[dict[str, Any]]:
        alerts = get_json(f"{prom_stack.prometheus}/api/v1/alerts")["data"]["alerts"]
        return [
            a
            for a in alerts
            if a["labels"]["alertname"] == "QACriticalFinding" and a["state"] == "firing"
        ]

    fired = wait_until(firing, 30, "QACriticalFinding to fire in Prometheus")
    assert fired[0]["labels"]["rule_id"] == "BAN-POLICY"
    assert fired[0]["labels"]["severity"] == "critical"

    def in_alertmanager() -> list[dict[str, Any]]:
        flt = urllib.request.quote('alertname="QACriticalFinding"')
        return get_json(f"{prom_stack.alertmanager}/api/v2/alerts?filter={flt}")

    am = wait_until(in_alertmanager, 30, "the alert in Alertmanager's API")
    assert am[0]["labels"]["rule_id"] == "BAN-POLICY"
    assert am[0]["status"]["state"] == "active"
    assert any(rcv["name"] == "qa-supervisors" for rcv in am[0]["receivers"])

    def webhook_got_it() -> list[dict[str, Any]]:
        return [
            msg
            for msg in prom_stack.webhook.received
            if msg["path"] == "/qa-alerts"
            and any(a["labels"]["alertname"] == "QACriticalFinding" for a in msg["alerts"])
        ]

    msgs = wait_until(webhook_got_it, 30, "the webhook receiver to get the alert")
    assert msgs[0]["receiver"] == "qa-supervisors" and msgs[0]["status"] == "firing"

    assert r.terminate() == 0  # SIGTERM: clean shutdown
    lines = (tmp_path / "events" / "alert.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2  # the Kafka-less default still wrote the live alerts
