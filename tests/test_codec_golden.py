"""The message codecs write what they always wrote: every encoding in
``tests/data/codec_golden.json`` (messages, transcript documents, events, store keys and
rows) was produced by the hand-written codecs before the codecs were derived from the
message types, and must come out byte for byte the same."""

from __future__ import annotations

import json

import pytest
from codec_samples import GOLDEN, encodings

_GOLDEN: dict[str, str] = json.loads(GOLDEN.read_text(encoding="utf-8"))
_NOW = encodings()


def test_golden_covers_every_encoding() -> None:
    assert sorted(_NOW) == sorted(_GOLDEN)


@pytest.mark.parametrize("name", sorted(_GOLDEN))
def test_encoding_unchanged(name: str) -> None:
    assert _NOW[name] == _GOLDEN[name]


def test_documents_read_back_to_the_same_messages() -> None:
    from codec_samples import findings, scorecards, transcripts, verdicts

    from qa_pipeline.messages import to_dict
    from qa_pipeline.sinks.codec import finding_from_dict, scorecard_from_dict, verdict_from_dict
    from qa_pipeline.transcript import transcript_from_dict, transcript_to_dict

    # floats are written to 4 places: a document read back writes the same document
    for f in findings().values():
        assert to_dict(finding_from_dict(to_dict(f))) == to_dict(f)
    for v in verdicts().values():
        assert to_dict(verdict_from_dict(to_dict(v))) == to_dict(v)
    bare = findings()["finding_bare"]
    assert finding_from_dict(to_dict(bare)) == bare
    assert verdict_from_dict(to_dict(verdicts()["verdict_na"])) == verdicts()["verdict_na"]
    card = scorecards()["card_full"]
    back = scorecard_from_dict(to_dict(card))
    assert back.score == round(card.score, 4) and back.extras[0] == ("gap_mean", 1.2346)
    assert to_dict(back) == to_dict(card) and back.incomplete_reasons == card.incomplete_reasons
    t = transcripts()["transcript_full"]
    doc = transcript_to_dict(t)
    assert transcript_to_dict(transcript_from_dict(doc)) == doc
    assert transcript_from_dict(doc).call == t.call


def test_a_bad_document_names_the_field() -> None:
    from qa_pipeline.sinks.codec import finding_from_dict

    with pytest.raises(ValueError, match="severity"):
        finding_from_dict({"call_id": "c", "rule_id": "r", "severity": "fatal", "message": ""})


def test_audio_messages_cross_processes_as_msgpack() -> None:
    import msgspec
    import numpy as np
    from codec_samples import calls, scorecards, utterances

    from qa_pipeline.messages import AudioChunk, Role, SpeechSegment, from_wire, to_wire

    rng = np.random.default_rng(7)
    samples = rng.standard_normal(16000).astype(np.float32)
    chunk = AudioChunk("c-全", 1, Role.CUSTOMER, 0.02, 8000, samples)
    data = to_wire(chunk)
    # raw float32 bytes, not a list of numbers
    assert samples.tobytes() in data and len(data) < samples.nbytes + 200
    back = from_wire(data, AudioChunk)
    assert back.samples.dtype == np.float32 and back.samples.shape == samples.shape
    np.testing.assert_array_equal(back.samples, samples)
    assert (back.call_id, back.channel, back.role, back.start, back.sample_rate) == (
        "c-全",
        1,
        Role.CUSTOMER,
        0.02,
        8000,
    )
    assert back.samples.flags.writeable
    seg = SpeechSegment("c", 0, Role.AGENT, 1.0, 2.0, samples[:8000].reshape(2, 4000))
    seg_back = from_wire(to_wire(seg), SpeechSegment)
    np.testing.assert_array_equal(seg_back.samples, seg.samples)
    assert (seg_back.start, seg_back.end, seg_back.sample_rate) == (1.0, 2.0, 16000)
    # the other messages cross the same way, exactly (no rounding on the wire)
    for msg in [*calls().values(), *utterances().values(), *scorecards().values()]:
        assert from_wire(to_wire(msg), type(msg)) == msg
    with pytest.raises(msgspec.ValidationError):
        from_wire(to_wire(chunk), SpeechSegment)
