"""The redactor's contract: masks, spans, modes, keyed hash."""

from __future__ import annotations

import pytest

from qa_pipeline.errors import ConfigError
from qa_pipeline.privacy import PrivacyConfig, Redactor


def test_label_mode_masks_a_spoken_mobile_number() -> None:
    r = Redactor(key=b"k")
    out = r.redact("我的手机号是幺三八，一二三四，五六七八，谢谢")
    assert out.text == "我的手机号是[手机号]，谢谢"
    (span,) = out.spans
    assert (span.kind, out.text[span.start : span.end]) == ("mobile", "[手机号]")
    assert span.digest and span.tail == ""


def test_the_same_number_gets_the_same_digest_across_forms() -> None:
    r = Redactor(PrivacyConfig(mode="hash", keep_last=4), key=b"k")
    a = r.redact("13812345678").spans[0]
    b = r.redact("幺三八 一二三四 五六七八").spans[0]
    assert a.digest == b.digest and a.tail == b.tail == "5678"
    assert r.redact("13812345678").text == f"[手机号#{a.digest}…5678]"
    assert (
        Redactor(PrivacyConfig(mode="hash"), key=b"other").redact("13812345678").spans[0].digest
        != a.digest
    )


def test_mask_mode_keeps_at_most_the_last_digits() -> None:
    out = Redactor(PrivacyConfig(mode="mask", keep_last=4)).redact("电话13812345678")
    assert out.text == "电话*******5678"


def test_redaction_off_and_idempotent() -> None:
    assert Redactor(PrivacyConfig(redact=False)).text("13812345678") == "13812345678"
    r = Redactor()
    once = r.text("号码13812345678")
    assert r.text(once) == once


def test_hash_mode_without_a_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QA_PIPELINE_PRIVACY_KEY", raising=False)
    with pytest.raises(ConfigError, match="QA_PIPELINE_PRIVACY_KEY"):
        Redactor(PrivacyConfig(mode="hash"))


def test_redacting_twice_changes_nothing_even_with_digits_in_a_digest() -> None:
    # a keyed digest is hex: some hold a run of decimal digits that looks like a number
    r = Redactor(PrivacyConfig(mode="hash", keep_last=4), key=b"k")
    for i in range(300):
        once = r.text(f"电话138{i:08d}，邮箱a{i}@qq.com")
        assert r.text(once) == once


def test_an_id_mask_keeping_its_check_letter_is_recognised_as_a_mask() -> None:
    """``keep_last`` leaves an ID number's X visible; redacting the utterance again keeps
    its raw text and spans (the mask pattern reads the X too)."""
    from qa_pipeline.messages import Role, Utterance
    from qa_pipeline.privacy.apply import masks_in, redact_utterance

    r = Redactor(PrivacyConfig(keep_last=4), key=b"k")
    said = "身份证号11010519491231002X"
    once = redact_utterance(Utterance("c", 0, 1, Role.CUSTOMER, 0, 1, said, raw_text=said), r)
    assert once.text == "身份证号[身份证号…002X]"
    assert [s.kind for s in masks_in(once.text)] == ["id_number"]
    assert redact_utterance(once, r) == once
