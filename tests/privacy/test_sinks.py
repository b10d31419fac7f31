"""The sinks encode the messages they are given: a redacted call's events carry masks and
spans, never the digits, through the JSONL sink, the Kafka sink (its spool holds what goes
on the wire) and a notification quoting the evidence."""

from __future__ import annotations

import json
import socket
import textwrap
from pathlib import Path

import pytest

from qa_pipeline.messages import Utterance, from_dict
from qa_pipeline.notify.message import from_alert
from qa_pipeline.rules import load_pack, score_transcript
from qa_pipeline.sinks import Event, Spool, events_for_call
from qa_pipeline.sinks.jsonl import JsonlSink, JsonlSinkConfig
from qa_pipeline.testing import transcript

from .conftest import MOBILE, SENTENCE, files_under, leaks

PACK = """\
name: sinks
version: "1"
rules:
  - id: MOBILE
    description: 客户报了手机号（测试规则）
    severity: critical
    weight: 5
    forbid: {role: customer, entity: mobile}
"""


@pytest.fixture()
def events(tmp_path: Path) -> list[Event]:
    (tmp_path / "pack.yaml").write_text(textwrap.dedent(PACK), encoding="utf-8")
    t = transcript([("a", 0, 2, "您好，请讲"), ("c", 2.5, 5, SENTENCE["mobile"])], call_id="s-1")
    card = score_transcript(load_pack(tmp_path / "pack.yaml"), t)
    assert [f.rule_id for f in card.findings] == ["MOBILE"]
    return events_for_call(t, card.findings, card)


def test_jsonl_and_notification_carry_masks(events: list[Event], tmp_path: Path) -> None:
    sink = JsonlSink(JsonlSinkConfig(directory=str(tmp_path / "events")))
    for ev in events:
        sink.emit(ev)
    sink.close()
    (alert,) = [e for e in events if e.kind.value == "alert"]
    note = from_alert(alert, "A1", include_evidence=True, dashboard_url=None)
    texts = files_under(tmp_path / "events")
    texts += [("markdown", note.markdown()), ("webhook", json.dumps(note.document()))]
    assert not leaks(texts, [MOBILE])
    assert "原话：我的手机号是[手机号]" in note.text()
    (line,) = [ln for _, t in files_under(tmp_path / "events") for ln in t.splitlines()
               if '"kind":"utterance"' in ln and "手机号" in ln]  # fmt: skip
    utt = from_dict({**Event.from_json(line).payload, "call_id": "s-1"}, Utterance)
    (span,) = utt.entities
    assert (span.kind, utt.text[span.start : span.end]) == ("mobile", "[手机号]")


def test_kafka_spool_holds_no_digits(events: list[Event], tmp_path: Path) -> None:
    pytest.importorskip("kafka")
    from qa_pipeline.sinks.kafka import KafkaSink, KafkaSinkConfig, SpoolConfig

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there: every event stays spooled
    cfg = KafkaSinkConfig(
        bootstrap_servers=(f"127.0.0.1:{port}",),
        max_block_ms=300,
        request_timeout_ms=1000,
        delivery_timeout_ms=2000,
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
        close_timeout_s=0.5,
        spool=SpoolConfig(directory=str(tmp_path / "spool"), sync="normal"),
    )
    sink = KafkaSink(cfg)
    for ev in events:
        sink.emit(ev)
    sink.flush(0.5)
    sink.close()
    sp = Spool(tmp_path / "spool")
    values = [r.value.decode() for r in sp.peek(1000)]  # the records' bytes on the wire
    sp.close()
    assert len(values) == len(events)
    assert not leaks([("spool", v) for v in values] + files_under(tmp_path / "spool"), [MOBILE])
    assert any("[手机号]" in v and '"entities":[{"kind":"mobile"' in v for v in values)
