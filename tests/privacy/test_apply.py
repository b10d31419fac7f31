"""Redaction applied to what the pipeline carries: the text step, utterances, call metadata,
JSON written before; the ``entity`` condition reading the spans; and the accuracy corpus'
reference verdicts, which masking must not move."""

from __future__ import annotations

import typing

import pytest

from qa_pipeline.asr.engine import AsrResult
from qa_pipeline.messages import CallInfo, EntitySpan, Role, SpeechSegment, Utterance
from qa_pipeline.privacy import (
    Kind,
    PrivacyConfig,
    Redactor,
    default_redactor,
    redact_call,
    redact_json,
    redact_text,
    redact_utterance,
)
from qa_pipeline.privacy.apply import masks_in
from qa_pipeline.rules import load_pack, score_transcript
from qa_pipeline.rules.ops.entity import EntityKind
from qa_pipeline.testing import transcript
from qa_pipeline.text import utterance

from .conftest import MOBILE, SENTENCE


def _result(text: str, raw: str | None = None) -> AsrResult:
    import numpy as np

    seg = SpeechSegment("c-1", 1, Role.CUSTOMER, 1.0, 3.0, np.zeros(32000, np.float32))
    return AsrResult(seg, text, raw if raw is not None else text, 0.9, 0.0, "zh", 8, 0.1)


def test_the_text_step_redacts_text_raw_text_and_keeps_spans() -> None:
    u = utterance(_result(f"我的手機號是{MOBILE}", raw="我的手機號是１３９１２３４５６７８"), 0)
    assert u.text == "我的手机号是[手机号]"  # normalised, then masked
    assert u.raw_text == "我的手機號是[手机号]"  # full-width digits masked too
    (span,) = u.entities
    assert (span.kind, u.text[span.start : span.end]) == ("mobile", "[手机号]")
    off = Redactor(PrivacyConfig(redact=False))
    assert utterance(_result(SENTENCE["mobile"]), 0, off).text == SENTENCE["mobile"]
    masked = utterance(_result(SENTENCE["mobile"]), 0, Redactor(PrivacyConfig(mode="mask")))
    assert masked.text == "我的手机号是" + "*" * 11


def test_raw_text_the_recognisers_cannot_read_is_replaced() -> None:
    """A raw decode in which the recognisers find less than in the normalised text (a form
    only the normalisation reads) is replaced by the redacted text: it could still hold
    the number. Raw text with nothing to hide stays as Whisper wrote it."""
    r = default_redactor()
    u = Utterance("c", 0, 1, Role.CUSTOMER, 0, 1, "您好，请讲", raw_text="您好,請講")
    assert redact_utterance(u, r) is u
    u = Utterance("c", 0, 1, Role.CUSTOMER, 0, 1, SENTENCE["mobile"], raw_text="壹叁玖壹贰叁")
    assert redact_utterance(u, r).raw_text == "我的手机号是[手机号]"


def test_redaction_is_idempotent_and_keeps_existing_masks() -> None:
    r = Redactor(PrivacyConfig(mode="hash", keep_last=4), key=b"k")
    once = redact_text(f"号码{MOBILE}，再说一遍{MOBILE}", r)
    assert MOBILE not in once.text and len(once.spans) == 2
    assert redact_text(once.text, r) == once  # masks recognised in the text, kept as they are
    assert masks_in(once.text) == once.spans
    u = Utterance("c", 0, 1, Role.CUSTOMER, 0, 1, once.text, entities=once.spans)
    assert redact_utterance(u, r) is u
    # a new number beside an old mask: the old span moves with the text
    label = default_redactor()
    old = redact_text(f"{MOBILE}", label)
    both = redact_text(f"号码13800138000，{old.text}", label)
    assert both.text == "号码[手机号]，[手机号]"
    assert [both.text[s.start : s.end] for s in both.spans] == ["[手机号]", "[手机号]"]


def test_call_metadata_from_outside_is_masked() -> None:
    call = CallInfo(
        "c-1",
        agent_id="A0001",
        source=f"/rec/{MOBILE}_0301.wav",
        metadata=(("From", "+86 139-1234-5678"), ("ani", "02161234567"), ("queue", "vip")),
    )
    got = redact_call(call, default_redactor())
    assert dict(got.metadata) == {"From": "[手机号]", "ani": "[电话号码]", "queue": "vip"}
    assert got.source == "/rec/[手机号]_0301.wav"
    assert (got.call_id, got.agent_id) == ("c-1", "A0001")  # identifiers, kept
    keep = Redactor(PrivacyConfig(mode="mask", keep_last=4))
    assert dict(redact_call(call, keep).metadata)["From"].endswith("5678")
    assert redact_call(got, default_redactor()) is got


def test_redact_json_finds_utterances_evidence_and_calls() -> None:
    doc = {
        "call": {"call_id": "c", "metadata": {"caller": MOBILE}, "source": "x.wav"},
        "utterances": [{"index": 0, "channel": 1, "start": 0, "text": SENTENCE["mobile"]}],
        "findings": [{"evidence": [{"utterance_index": 0, "text": MOBILE, "matched": MOBILE}]}],
        "verdicts": [{"rule_id": "R", "evidence": []}],
    }
    assert redact_json(doc, default_redactor()) == 3
    assert MOBILE not in str(doc)
    assert doc["utterances"][0]["entities"] == [
        {"kind": "mobile", "start": 6, "end": 11, "digest": "", "tail": ""}
    ]
    assert redact_json(doc, default_redactor()) == 0


def test_entity_kinds_cover_every_kind_of_personal_data() -> None:
    kinds = set(typing.get_args(EntityKind))
    assert {k.value for k in Kind} <= kinds and {"phone", "number"} <= kinds


def _pack(tmp_path: typing.Any, cond: str) -> typing.Any:
    (tmp_path / "pack.yaml").write_text(
        "name: t\nversion: '1'\nrules:\n  - id: R\n    description: x\n    severity: minor\n"
        f"    weight: 1\n    forbid: {cond}\n",
        encoding="utf-8",
    )
    return load_pack(tmp_path / "pack.yaml")


@pytest.mark.parametrize(
    ("cond", "text", "fires"),
    [
        ("{entity: mobile}", SENTENCE["mobile"], True),
        ("{entity: phone}", SENTENCE["mobile"], True),
        ("{entity: id_number}", SENTENCE["mobile"], False),
        ("{entity: mobile}", "订单号1381234567890", False),  # 13 digits: not a mobile
        ("{entity: number}", SENTENCE["mobile"], True),  # a masked number is a number
        ("{entity: number}", "三天内", True),
        ("{entity: number}", "好的", False),
    ],
)
def test_entity_condition_reads_the_spans(
    tmp_path: typing.Any, cond: str, text: str, fires: bool
) -> None:
    card = score_transcript(_pack(tmp_path, cond), transcript([("c", 0, 1, text)]))
    assert [f.rule_id for f in card.findings] == (["R"] if fires else [])


def test_entity_evidence_is_the_mask_in_every_mode(tmp_path: typing.Any) -> None:
    pack = _pack(tmp_path, "{entity: mobile}")
    for mode, matched in (("label", "手机号"), ("mask", "")):
        r = Redactor(PrivacyConfig(mode=mode))  # type: ignore[arg-type]
        t = transcript([("c", 0, 1, SENTENCE["mobile"])], redact=False)
        u = redact_utterance(t.utterances[0], r)
        from dataclasses import replace

        (f,) = score_transcript(pack, replace(t, utterances=(u,))).findings
        assert f.evidence[0].matched == matched and MOBILE not in f.evidence[0].text
    # spans written by hand (an old message) still read
    u = Utterance("t", 0, 1, Role.CUSTOMER, 0, 1, "号码[x]", entities=(EntitySpan("mobile", 2, 5),))
    t = transcript([("c", 0, 1, "号码[x]")], redact=False)
    from dataclasses import replace

    (f,) = score_transcript(pack, replace(t, utterances=(u,))).findings
    assert f.evidence[0].matched == "x"


def test_reference_verdicts_of_the_corpus_do_not_move() -> None:
    """The accuracy corpus' reference scripts, masked as the text step masks a decode,
    give every verdict the raw scripts give (redaction takes no accuracy)."""
    from qa_pipeline.privacy import redact_transcript
    from qa_pipeline.samples import corpus as cp
    from qa_pipeline.transcript import transcript_from_dict

    r = default_redactor()
    for p in cp.plan_corpus(cp.DEFAULT_CALLS, cp.DEFAULT_SEED):
        timing = cp.estimate_timing(p)
        pack = load_pack(settings={"company_name": p.company})
        t = transcript_from_dict(cp.reference_transcript(p, timing))
        raw = {v.rule_id: v.verdict for v in score_transcript(pack, t).verdicts}
        masked = score_transcript(pack, redact_transcript(t, r)).verdicts
        assert {v.rule_id: v.verdict for v in masked} == raw, p.id


def test_fixtures_written_with_digits_are_redacted_when_loaded(tmp_path: typing.Any) -> None:
    """``qa-pipeline rules test``: a fixture may write the number a customer says; it is
    redacted as a decode would be, so an ``entity`` rule sees its span."""
    from typer.testing import CliRunner

    from qa_pipeline.cli import app

    pack = _pack(tmp_path, "{role: customer, entity: mobile}")
    assert pack.name == "t"
    fixtures = tmp_path / "fixtures"
    fixtures.mkdir()
    (fixtures / "f.yaml").write_text(
        "fixtures:\n"
        "  - name: said\n"
        f"    turns: [[customer, 0.5, 3.0, 我的手机号是{MOBILE}]]\n"
        "    expect: {R: fire}\n"
        "  - name: order-number\n"
        "    turns: [[customer, 0.5, 3.0, 订单号1381234567890]]\n"
        "    expect: {R: ok}\n",
        encoding="utf-8",
    )
    args = ["rules", "test", str(tmp_path / "pack.yaml"), "--fixtures", str(fixtures)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "2 fixtures, 2 expectations, 2 passed, 0 failed" in res.output


def test_phone_keys_are_words_of_the_key() -> None:
    from qa_pipeline.privacy.apply import is_phone_key

    assert all(map(is_phone_key, ["From", "caller_id", "callerNumber", "ANI", "to", "x-msisdn"]))
    assert not any(map(is_phone_key, ["order_no", "queue_number", "tone", "fromage", "tenant"]))
    r = Redactor(PrivacyConfig(mode="hash"), key=b"k")
    call = CallInfo("c", metadata=(("From", MOBILE), ("queue_number", "12"), ("order_no", "A1")))
    once = redact_call(call, r)
    assert dict(once.metadata)["From"].startswith("[手机号#")
    assert dict(once.metadata)["queue_number"] == "12" and redact_call(once, r) is once


def test_platform_identifiers_in_metadata_stay_as_given() -> None:
    """A Twilio call SID of digits is an identifier, not a card number; a caller id is a
    phone (the recognisers mask an unexplained run of nine digits or more elsewhere)."""
    from qa_pipeline.privacy.apply import is_identifier_key

    assert all(map(is_identifier_key, ["call_sid", "streamSid", "uuid", "channel_id"]))
    assert not any(map(is_identifier_key, ["caller_id", "CallerId", "id_number", "note"]))
    sid = "CA" + "2" * 32
    call = CallInfo("c", metadata=(("call_sid", sid), ("caller_id", MOBILE), ("note", sid)))
    meta = dict(redact_call(call, Redactor(key=b"k")).metadata)
    assert meta["call_sid"] == sid
    assert meta["caller_id"] == "[手机号]" and meta["note"] != sid
