"""Shared fixtures for the sink unit tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from qa_pipeline.messages import Finding, Scorecard
from qa_pipeline.metrics import PipelineMetrics
from qa_pipeline.sinks.codec import finding_from_dict, scorecard_from_dict
from qa_pipeline.transcript import Transcript, transcript_from_dict

CALLS_DIR = Path(__file__).parent / "data" / "calls"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: needs real servers/binaries (Kafka, Prometheus, promtool)"
    )


def load_call(name: str) -> tuple[Transcript, list[Finding], Scorecard]:
    doc = json.loads((CALLS_DIR / f"{name}.json").read_text(encoding="utf-8"))
    t = transcript_from_dict(doc)
    findings = [finding_from_dict(f, t.call.call_id) for f in doc["findings"]]
    return t, findings, scorecard_from_dict(doc["scorecard"], t.call.call_id)


@pytest.fixture
def call_data() -> Callable[[str], tuple[Transcript, list[Finding], Scorecard]]:
    """``call_data("call-001")`` -> (transcript, findings, scorecard) of a test call."""
    return load_call


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> PipelineMetrics:
    return PipelineMetrics(registry)
