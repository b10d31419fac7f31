"""Decoder bias from the rule pack: what is told to Whisper, and how it meets the cache."""

from qa_pipeline.asr.bias import MAX_TERMS_CHARS, bias_terms, bias_version
from qa_pipeline.config import load_config
from qa_pipeline.rules import load_pack
from qa_pipeline.rules.terms import pack_terms
from qa_pipeline.store import transcript_settings


def test_pack_terms_by_mode() -> None:
    pack = load_pack(settings={"company_name": "华冠"})
    assert pack_terms(pack, "off") == []
    assert pack_terms(pack, "company") == ["华冠"]
    terms = pack_terms(pack, "pack")
    assert terms[0] == "华冠" and "您好" in terms and "感谢您的来电" in terms
    banned = [p for r in pack.rules if r.mode == "forbid" for p in _phrases(r.spec.forbid)]
    assert banned and not set(banned) & set(terms)  # never nudged toward a banned phrase
    complaint = pack.settings.phrases["complaint"]
    assert not set(complaint) & set(terms)  # nor toward a customer's complaint cue


def _phrases(cond: object) -> list[str]:
    out: list[str] = []
    for op, v in cond.operators():  # type: ignore[attr-defined]
        if op in ("all", "any"):
            for c in v:
                out += _phrases(c)
        elif op in ("not", "exists"):
            out += _phrases(v)
        elif op == "fuzzy":
            out += v.phrases
        elif op == "keyword":
            out += v.any
    return out


def test_terms_deduplicated_and_bounded() -> None:
    assert bias_terms(["华冠", " ", "华冠", "华冠客服", "华"]) == ("华冠", "华冠客服")
    long = bias_terms([f"产品{i:03d}" for i in range(100)])
    assert sum(len(t) for t in long) <= MAX_TERMS_CHARS
    assert bias_version(()) is None
    assert bias_version(("华冠",)) != bias_version(("华夏",))


def test_bias_list_is_not_part_of_the_cache_key() -> None:
    """Editing a rule's phrases (or the company name) must not re-transcribe an archive:
    the key holds whether biasing is on, the list is the transcript's provenance."""
    on = load_config(None, {"rules": {"settings": {"company_name": "华冠"}}})
    other = load_config(None, {"rules": {"settings": {"company_name": "华夏"}}})
    off = load_config(None, {"asr": {"bias": "off"}})
    assert transcript_settings(on) == transcript_settings(other)
    assert transcript_settings(on) != transcript_settings(off)
    assert "bias" not in transcript_settings(off)["asr"]  # keys of older transcripts hold
