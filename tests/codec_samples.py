"""Representative messages and the encodings the project writes of them (golden data).

``python -m tests.codec_samples`` rewrites ``tests/data/codec_golden.json`` from the code as
it stands; the file committed was written by the hand-listed codecs before they were
derived from the message types, and ``tests/test_codec_golden.py`` holds the code to it.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from qa_pipeline.config import PipelineConfig
from qa_pipeline.messages import (
    AudioChunk,
    CallEnded,
    CallInfo,
    Direction,
    EntitySpan,
    Evidence,
    Finding,
    Role,
    RuleVerdict,
    Scorecard,
    Severity,
    SpeechSegment,
    Utterance,
    Verdict,
    to_dict,
)
from qa_pipeline.pipeline import AsrStats, CallResult
from qa_pipeline.report import result_document
from qa_pipeline.rescore.scoring import result_row
from qa_pipeline.sinks.base import EventFactory
from qa_pipeline.sinks.codec import finding_from_dict, scorecard_from_dict, verdict_from_dict
from qa_pipeline.store import Store, doc_key, settings_hash, transcript_settings
from qa_pipeline.transcript import Transcript, transcript_from_dict, transcript_to_dict

GOLDEN = Path(__file__).parent / "data" / "codec_golden.json"
SINK_CALLS = Path(__file__).parent / "sinks" / "data" / "calls"

SESSION = "0192a0b0c0d0e0f0a1b2c3d4e5f60718"


def calls() -> dict[str, CallInfo]:
    return {
        "call_minimal": CallInfo(call_id="c-min"),
        "call_full": CallInfo(
            call_id="c-全-1",
            started_at=datetime(2026, 3, 4, 9, 5, 7, 123456),
            direction=Direction.OUTBOUND,
            agent_id="坐席-007",
            channels=(Role.CUSTOMER, Role.AGENT),
            source="/calls/客户 1.wav",
            metadata=(("queue", "信用卡"), ("skill", "vip")),
            session_id=SESSION,
        ),
        "call_tz": CallInfo(
            call_id="c-tz",
            started_at=datetime(2026, 1, 2, 23, 59, 59, tzinfo=timezone(timedelta(hours=8))),
            channels=(Role.UNKNOWN,),
        ),
        "call_utc": CallInfo(call_id="c-utc", started_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    }


def utterances() -> dict[str, Utterance]:
    return {
        "utt_plain": Utterance("c-全-1", 0, 0, Role.AGENT, 0.5, 2.25, "您好，请问有什么可以帮您？"),
        "utt_full": Utterance(
            "c-全-1",
            1,
            1,
            Role.CUSTOMER,
            1 / 3,
            2 / 3 + 1.0,
            "我要投诉！！",
            raw_text="我要投訴！！",
            confidence=0.987654321,
            no_speech_prob=0.0123456,
            level_dbfs=-23.456789,
            language="zh",
        ),
        "utt_unreadable": Utterance(
            "c-全-1", 2, 0, Role.AGENT, 3.0, 4.5, "", raw_text="", confidence=0.0
        ),
        "utt_verified": Utterance(
            "c-全-1",
            3,
            0,
            Role.AGENT,
            5.0,
            7.125,
            "感谢来电",
            raw_text="感谢来电",
            confidence=0.61,
            verified=("工号", "再见"),
        ),
        # numbers straight from numpy (a decoder's float32 times, a float64 confidence)
        "utt_numpy": Utterance(
            "c-全-1",
            np.int64(4),  # type: ignore[arg-type]
            0,
            Role.AGENT,
            np.float32(9.123456789),  # type: ignore[arg-type]
            np.float64(10.98765432),
            "好的",
            confidence=np.float32(0.3333333),  # type: ignore[arg-type]
        ),
        "utt_quotes": Utterance("c-x", 4, 1, Role.UNKNOWN, 8.0, 9.0, 'a "quote" \\ \n 😀'),
        "utt_redacted": Utterance(
            "c-全-1",
            5,
            1,
            Role.CUSTOMER,
            10.0,
            14.5,
            "我的手机号是[手机号]，谢谢",
            raw_text="我的手机号是[手机号]，谢谢",
            entities=(EntitySpan("mobile", 6, 11, "3fa2c1d0e4b5", "5678"),),
        ),
    }


def evidence() -> dict[str, Evidence]:
    return {
        "ev_span": Evidence(start=10.0, end=20.00004),
        "ev_utt": Evidence(
            start=1.23456, end=2.5, utterance_index=3, role=Role.AGENT, text="工号", matched="工号"
        ),
    }


def findings() -> dict[str, Finding]:
    ev = evidence()
    return {
        "finding_bare": Finding("c-全-1", "greeting", Severity.MINOR, "没有问候"),
        "finding_full": Finding(
            "c-全-1",
            "no_abuse",
            Severity.CRITICAL,
            "辱骂客户",
            evidence=(ev["ev_utt"], ev["ev_span"]),
            decided_at=12.345678,
            weight=10.0,
            suggestion="请使用礼貌用语",
        ),
    }


def verdicts() -> dict[str, RuleVerdict]:
    ev = evidence()
    return {
        "verdict_passed": RuleVerdict("greeting", Verdict.PASSED, Severity.MINOR, 5.0),
        "verdict_failed": RuleVerdict(
            "no_abuse",
            Verdict.FAILED,
            Severity.CRITICAL,
            10.0,
            description="不得辱骂",
            deduction=10.0,
            evidence=(ev["ev_utt"],),
        ),
        "verdict_na": RuleVerdict("refund", Verdict.NOT_APPLICABLE, Severity.MAJOR, 3.0),
        "verdict_uncertain": RuleVerdict(
            "closing",
            Verdict.UNCERTAIN,
            Severity.MAJOR,
            4.0,
            description="结束语",
            detail="confidence 0.41",
            pending_deduction=4.0,
            evidence=(ev["ev_utt"], ev["ev_span"]),
        ),
    }


def scorecards() -> dict[str, Scorecard]:
    v, f = verdicts(), findings()
    return {
        "card_bare": Scorecard("c-min", 100.0, "A", False),
        "card_full": Scorecard(
            "c-全-1",
            85.55555,
            "B",
            True,
            verdicts=tuple(v.values()),
            findings=tuple(f.values()),
            rule_pack="默认",
            rule_pack_version="2.1.0",
            duration=61.23456,
            extras=(("gap_mean", 1.234567), ("agent_pace", 4.0)),
            review=True,
            complete=False,
            incomplete_reasons=("asr_queue_full", "shutdown"),
        ),
    }


def others() -> dict[str, Any]:
    samples = np.linspace(-1, 1, 8, dtype=np.float32)
    return {
        "ended_bare": CallEnded("c-min", 0.0),
        "ended_full": CallEnded("c-全-1", 61.23456, channel_ends=(60.0, 61.23456)),
        "chunk": AudioChunk("c-全-1", 1, Role.CUSTOMER, 0.02, 8000, samples),
        "segment": SpeechSegment("c-全-1", 0, Role.AGENT, 0.5, 2.25, samples),
    }


def transcripts() -> dict[str, Transcript]:
    c, u = calls(), utterances()
    full = tuple(x for k, x in u.items() if k != "utt_quotes")
    return {
        "transcript_full": Transcript(
            call=c["call_full"],
            utterances=full,
            ended=CallEnded("c-全-1", 61.23456, channel_ends=(60.0, 61.2)),
            asr=(("beam", 5), ("model", "small")),
        ),
        "transcript_empty": Transcript(
            call=c["call_minimal"], utterances=(), ended=CallEnded("c-min", 0.0)
        ),
    }


def dumps(obj: Any) -> str:
    """The project's compact JSON (``store.compact_json``, ``Event.to_json``)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def encodings() -> dict[str, str]:
    """Name -> the text the project writes (messages, documents, events, store keys and rows)."""
    out: dict[str, str] = {}
    messages: dict[str, Any] = {
        **calls(),
        **utterances(),
        **evidence(),
        **findings(),
        **verdicts(),
        **scorecards(),
        **others(),
    }
    for name, msg in messages.items():
        out[f"to_dict/{name}"] = dumps(to_dict(msg))
    out["to_dict/tuple_of_findings"] = dumps(to_dict(tuple(findings().values())))
    for name, t in transcripts().items():
        doc = transcript_to_dict(t)
        out[f"transcript/{name}"] = dumps(doc)
        out[f"doc_key/{name}"] = doc_key(doc)
    # events: the payloads of a call's envelopes (produced_at is the clock, left out)
    t = transcripts()["transcript_full"]
    ef = EventFactory(t.call.call_id, session_id=SESSION)
    events = [ef.utterance(u) for u in t.utterances]
    for f in findings().values():
        events.extend(ef.finding(f))
    events.append(ef.scorecard(scorecards()["card_full"]))
    events.append(ef.transcript(t))
    for e in events:
        d = e.to_json_dict()
        d.pop("produced_at")
        out[f"event/{e.seq}-{e.kind.value}"] = dumps(d)
    # the score --json / transcribe --json documents
    stats = AsrStats(61.23456, 40.1, 12.3456, 13.45678, 7, dropped=(("queue_full", 1),))
    out["report/score_json"] = dumps(
        result_document(CallResult(t, stats, scorecards()["card_full"]))
    )
    out["report/transcribe_json"] = dumps(result_document(CallResult(t, stats)))
    # store: settings key, rows as stored
    engine = {"model": "embedded", "model_sha256": "0" * 64, "compute_type": "int8", "beam": 5}
    settings = transcript_settings(PipelineConfig(), engine)
    out["store/settings_hash"] = settings_hash(settings)
    card = scorecards()["card_full"]
    out["store/result_row"] = dumps(list(result_row("run-1", "c-全-1", "k1", card, 1.5)))
    out["store/result_row_bare"] = dumps(
        list(result_row("run-1", "c-min", "k2", scorecards()["card_bare"], 2.5))
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.sqlite"
        with Store(path) as st:
            h = st.put_settings(settings)
            st.put_transcript(t, audio_sha="a" * 64, settings_hash_=h)
        db = sqlite3.connect(path)
        out["store/settings_row"] = dumps(list(db.execute("SELECT * FROM settings").fetchone()))
        doc, call = db.execute(
            "SELECT t.doc, c.call FROM transcripts t JOIN calls c USING (call_id)"
        ).fetchone()
        db.close()
        out["store/transcript_doc"] = doc
        out["store/call"] = call
    # decoding: the documents read back, written again (the sinks' test calls are old
    # documents from before later fields existed)
    for p in sorted(SINK_CALLS.glob("*.json")):
        src = json.loads(p.read_text(encoding="utf-8"))
        tr = transcript_from_dict(src)
        out[f"decoded/{p.stem}/transcript"] = dumps(transcript_to_dict(tr))
        cid = tr.call.call_id
        out[f"decoded/{p.stem}/findings"] = dumps(
            [to_dict(finding_from_dict(f, cid)) for f in src["findings"]]
        )
        out[f"decoded/{p.stem}/scorecard"] = dumps(
            to_dict(scorecard_from_dict(src["scorecard"], cid))
        )
    for name, v in verdicts().items():
        out[f"decoded/{name}"] = dumps(to_dict(verdict_from_dict(to_dict(v))))
    return out


if __name__ == "__main__":
    import sys

    dest = Path(sys.argv[1]) if len(sys.argv) > 1 else GOLDEN
    dest.parent.mkdir(exist_ok=True)
    text = json.dumps(encodings(), ensure_ascii=False, indent=1, sort_keys=True) + "\n"
    dest.write_text(text, encoding="utf-8")
    print(f"wrote {dest}")
