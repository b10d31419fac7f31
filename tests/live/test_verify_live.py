"""Verification of required phrases at a live call's end (qa_pipeline/live/verifier.py): the
audio kept per call stays within its cap and keeps each side's first and last turns; other
calls are served while one call verifies; (slow) a live call whose farewell Whisper
misheard gets the verified verdict, as the recorded path does."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from verify_calls import TOOLS_MISSING, agent_says, closing_pack

from qa_pipeline.config import VadConfig
from qa_pipeline.live.asr_worker import AsrWorker
from qa_pipeline.live.evaluator import RuleLane
from qa_pipeline.live.metrics import LiveMetrics
from qa_pipeline.live.session import CallSession
from qa_pipeline.live.verifier import KeptAudio, LiveVerifier
from qa_pipeline.messages import AudioChunk, CallInfo, Role, SpeechSegment, Utterance, Verdict
from qa_pipeline.rules import load_pack
from qa_pipeline.verify import Decoded

from .conftest import ANSWER_CLIP, clip8k

RATE = 8000
CHUNK = RATE // 50  # 20 ms

# -- the memory cap -------------------------------------------------------------------------


def _utt(i: int, ch: int, seconds: float) -> tuple[Utterance, SpeechSegment]:
    role = Role.AGENT if ch == 0 else Role.CUSTOMER
    start = 10.0 * i
    u = Utterance("m", i, ch, role, start, start + seconds, f"第{i}句话", f"第{i}句话")
    a = np.full(int(seconds * 16000), 0.25, dtype=np.float32)
    return u, SpeechSegment("m", ch, role, start, start + seconds, a)


def test_kept_audio_stays_within_its_cap_and_keeps_first_and_last_turns() -> None:
    cap = 40.0
    kept = KeptAudio(cap)
    turns = [(i, i % 2, 4.0) for i in range(60)]  # 60 turns of 4 s, agent and customer
    for i, ch, s in turns:
        kept.add(*_utt(i, ch, s))
        assert kept.seconds <= cap + 1e-9
        assert kept.nbytes == pytest.approx(kept.seconds * 32000)  # 16-bit at 16 kHz
    have = kept.indices()
    # each side's first turns (a quarter of the cap: 10 s, two 4 s turns) ...
    assert have[:4] == [0, 1, 2, 3]
    # ... and its latest ones; the middle of the call is gone
    assert have[-4:] == [56, 57, 58, 59]
    assert not any(10 <= i < 50 for i in have)
    assert kept.seconds == pytest.approx(cap)
    assert kept.dropped == 60 - len(have)
    # the audio comes back as it went in (16-bit precision), where and whose as it was
    seg = kept.segment(59)
    assert seg.samples.dtype == np.float32 and seg.channel == 1 and seg.start == 590.0
    assert np.allclose(seg.samples, 0.25, atol=1 / 32768)


def test_kept_audio_keeps_a_quiet_sides_last_turns() -> None:
    """The agent talks on and on after the customer's last turn: the agent's middle turns
    go, the customer's last ones stay."""
    kept = KeptAudio(40.0)
    seq = [(0, 0, 4.0), (1, 1, 4.0), (2, 0, 4.0), (3, 1, 4.0), (4, 1, 4.0), (5, 1, 4.0)]
    seq += [(i, 0, 4.0) for i in range(6, 40)]
    for i, ch, s in seq:
        kept.add(*_utt(i, ch, s))
    have = kept.indices()
    assert {4, 5} <= set(have)  # the customer's last turns
    assert have[-3:] == [37, 38, 39]  # the agent's last turns
    assert 0 in have and 2 in have  # the agent's first turns


def test_no_cap_no_audio_and_no_text_no_audio() -> None:
    off = KeptAudio(0.0)
    off.add(*_utt(0, 0, 3.0))
    assert len(off) == 0 and off.nbytes == 0
    kept = KeptAudio(60.0)
    u, seg = _utt(0, 0, 3.0)
    from qa_pipeline.messages import replace

    kept.add(replace(u, text=""), seg)  # unreadable speech: nothing to verify
    assert len(kept) == 0


# -- other calls are served while one call verifies -----------------------------------------

PACK = """\
name: live-verify
version: "1"
rules:
  - id: CLOSE-BYE
    description: 结束语
    severity: major
    weight: 4
    scope: {role: agent, last_turns: 2}
    require: {fuzzy: [再见]}
  - id: ANY-WORD
    description: 每句话都触发（测试）
    severity: minor
    weight: 0
    forbid: {regex: '.'}
    max_findings: 100
"""


class _Decoder:
    """A stand-in for the live decoder: every segment is heard as 好的，开天."""

    class opts:  # noqa: N801
        window = "fitted"

    def decode(self, segments: list[SpeechSegment]) -> list[Any]:
        from qa_pipeline.asr.result import AsrResult

        return [AsrResult(s, "好的，开天", "好的，开天", 0.9, 0.0, "zh", 5, 0.01) for s in segments]


class _SlowVerifier:
    """Verification decodes that wait for ``release`` (one is under way: ``started``);
    each hears 再见 and scores it as well as the heard text."""

    margin = 4.0

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.decodes = 0

    def decode(self, seg: SpeechSegment, utt: Utterance, hints: Any) -> Decoded:
        self.decodes += 1
        self.started.set()
        assert self.release.wait(30)
        return Decoded(utt.index, utt.text, ("好的，再见",) * len(hints), -5.0,
                       (-5.0,) * len(hints), (True,) * len(hints), -5.0, 0.1)  # fmt: skip

    def judge(self, d: Decoded, hints: Any, pack: Any) -> Any:
        from qa_pipeline.verify import Verifier

        return Verifier.judge(self, d, hints, pack)  # type: ignore[arg-type]


def _speech(clip: np.ndarray, silence: float = 0.5) -> np.ndarray:
    rng = np.random.default_rng(0)
    quiet = (rng.standard_normal(int(silence * RATE)) * 1e-4).astype(np.float32)
    return np.concatenate([quiet, clip, quiet])


def _session(pack: Any, worker: Any, lane: RuleLane, verifier: Any, events: list[Any], cid: str):  # type: ignore[no-untyped-def]
    return CallSession(
        CallInfo(cid, channels=(Role.AGENT, Role.CUSTOMER)),
        RATE,
        vad=VadConfig(),
        pack=pack,
        emit=events.append,
        metrics=_NoMetrics(),
        source="test",
        asr=worker,
        rules=lane,
        verifier=verifier,
        verify_keep_s=60.0,
    )


def _push(s: CallSession, agent: np.ndarray, t0: float = 0.0) -> None:
    quiet = np.zeros_like(agent)
    for i in range(0, len(agent), CHUNK):
        for ch, a in enumerate((agent, quiet)):
            s.push(
                AudioChunk(s.call.call_id, ch, Role.UNKNOWN, t0 + i / RATE, RATE, a[i : i + CHUNK])
            )


def test_other_calls_are_served_while_one_call_verifies(tmp_path: Path, speech_dir: Path) -> None:
    (tmp_path / "pack.yaml").write_text(PACK, encoding="utf-8")
    pack = load_pack(tmp_path / "pack.yaml")
    slow = _SlowVerifier()
    clip = _speech(clip8k(speech_dir, ANSWER_CLIP))

    async def main() -> None:
        worker = AsrWorker(_Decoder(), slots=2, max_batch=4)  # type: ignore[arg-type]
        worker.start()
        lane = RuleLane()
        lv = LiveVerifier(None, 4.0, worker, lane, pack, timeout_s=30, verifier=slow)  # type: ignore[arg-type]
        ev_a: list[Any] = []
        ev_b: list[Any] = []
        a = _session(pack, worker, lane, lv, ev_a, "A")
        b = _session(pack, worker, lane, lv, ev_b, "B")
        _push(a, clip)
        a.flush()
        finishing = asyncio.create_task(a.finish())
        t0 = time.monotonic()
        while not slow.started.is_set():  # A is verifying, one of the two slots taken
            assert time.monotonic() - t0 < 10
            await asyncio.sleep(0.02)
        assert not finishing.done()
        # B's utterances are decoded and ruled on meanwhile
        _push(b, np.concatenate([clip, clip]))
        t0 = time.monotonic()
        while sum(e.kind == "finding" for e in ev_b) < 2:
            assert time.monotonic() - t0 < 10, [e.kind for e in ev_b]
            await asyncio.sleep(0.02)
        assert not finishing.done() and slow.decodes == 1
        slow.release.set()
        card = await asyncio.wait_for(finishing, 10)
        verdicts = {v.rule_id: v.verdict for v in card.verdicts}
        assert verdicts["CLOSE-BYE"] is Verdict.PASSED  # verified at the end
        # the live findings (ANY-WORD) were not sent again with the scorecard
        found = [e for e in ev_a if e.kind == "finding"]
        assert len(found) == len({e.payload["rule_id"] for e in found}) == 1
        assert lv.outcomes == {"verified": 1}
        b.flush()
        card_b = await asyncio.wait_for(b.finish(), 10)  # B's decodes: verified too
        assert {v.rule_id: v.verdict for v in card_b.verdicts}["CLOSE-BYE"] is Verdict.PASSED
        await worker.close()
        lane.close()

    asyncio.run(main())


def test_on_one_slot_an_utterance_waits_behind_one_verification_step(
    tmp_path: Path, speech_dir: Path
) -> None:
    """The fair share with a single ASR slot: a verifying call takes it one utterance's
    decodes at a time, so another call's utterance is decoded between two of its steps."""
    (tmp_path / "pack.yaml").write_text(PACK, encoding="utf-8")
    pack = load_pack(tmp_path / "pack.yaml")
    clip = _speech(clip8k(speech_dir, ANSWER_CLIP))
    steps = threading.Semaphore(0)
    seen: list[int] = []  # B's utterances when each of A's steps began
    calls: dict[str, CallSession] = {}

    class Stepped(_SlowVerifier):
        def decode(self, seg: SpeechSegment, utt: Utterance, hints: Any) -> Decoded:
            seen.append(calls["B"].utterances)
            self.started.set()
            assert steps.acquire(timeout=30)
            return Decoded(utt.index, utt.text, ("好的",) * len(hints), -5.0,
                           (-50.0,) * len(hints), (True,) * len(hints), -5.0, 0.1)  # fmt: skip

    async def main() -> None:
        worker = AsrWorker(_Decoder(), slots=1, max_batch=4)  # type: ignore[arg-type]
        worker.start()
        lane = RuleLane()
        lv = LiveVerifier(None, 4.0, worker, lane, pack, timeout_s=30, verifier=Stepped())  # type: ignore[arg-type]
        a = _session(pack, worker, lane, lv, [], "A")
        b = calls["B"] = _session(pack, worker, lane, None, [], "B")
        _push(a, np.concatenate([clip, clip]))  # two turns in CLOSE-BYE's scope
        a.flush()
        finishing = asyncio.create_task(a.finish())
        t0 = time.monotonic()
        while not seen:
            assert time.monotonic() - t0 < 10
            await asyncio.sleep(0.02)
        _push(b, clip)
        b.flush()
        await asyncio.sleep(0.3)
        assert b.utterances == 0  # the one slot is A's first step's
        steps.release()
        t0 = time.monotonic()
        while len(seen) < 2:
            assert time.monotonic() - t0 < 10
            await asyncio.sleep(0.02)
        steps.release()
        await asyncio.wait_for(finishing, 10)
        assert seen == [0, 1]  # B's utterance was decoded before A's second step
        assert lv.outcomes == {"unchanged": 1}
        await worker.close()
        lane.close()

    asyncio.run(main())


def test_a_verification_that_times_out_keeps_the_unverified_scorecard(
    tmp_path: Path, speech_dir: Path
) -> None:
    (tmp_path / "pack.yaml").write_text(PACK, encoding="utf-8")
    pack = load_pack(tmp_path / "pack.yaml")
    slow = _SlowVerifier()
    clip = _speech(clip8k(speech_dir, ANSWER_CLIP))

    async def main() -> None:
        worker = AsrWorker(_Decoder(), slots=1, max_batch=4)  # type: ignore[arg-type]
        worker.start()
        lane = RuleLane()
        registry = CollectorRegistry()
        lv = LiveVerifier(
            None,
            4.0,
            worker,
            lane,
            pack,
            timeout_s=0.5,
            verifier=slow,  # type: ignore[arg-type]
            metrics=LiveMetrics(registry),
        )
        ev: list[Any] = []
        a = _session(pack, worker, lane, lv, ev, "A")
        _push(a, clip)
        a.flush()
        card = await asyncio.wait_for(a.finish(), 10)
        assert slow.started.is_set()  # given up in the decode
        assert {v.rule_id: v.verdict for v in card.verdicts}["CLOSE-BYE"] is Verdict.FAILED
        assert lv.outcomes == {"timeout": 1}
        assert registry.get_sample_value("qa_live_verify_total", {"outcome": "timeout"}) == 1
        assert [e.kind for e in ev].count("scorecard") == 1
        # the decode given up holds its slot until it ends; then the ASR serves on
        b = _session(pack, worker, lane, None, ev, "B")
        _push(b, clip)
        b.flush()
        await asyncio.sleep(0.3)
        assert b.utterances == 0  # the one slot is still the verification's
        slow.release.set()
        await asyncio.wait_for(b.finish(), 10)
        assert b.utterances == 1
        await worker.close()
        lane.close()

    asyncio.run(main())


# -- a live call's misheard farewell (Whisper) ----------------------------------------------


class _Misheard:
    """A live decoder whose readings of speech are replaced by ``text`` (a mishearing)."""

    def __init__(self, inner: Any, text: str) -> None:
        self.inner, self.opts, self.text = inner, inner.opts, text

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def decode(self, segments: Any) -> list[Any]:
        from dataclasses import replace

        out = self.inner.decode(segments)
        return [replace(r, text=self.text, raw_text=self.text) if r.text else r for r in out]


@pytest.mark.slow
@pytest.mark.skipif(bool(TOOLS_MISSING), reason=f"{TOOLS_MISSING} not installed (espeak-ng, sox)")
@pytest.mark.parametrize(
    ("said", "accepted"),
    [
        # said, misheard by the live decode as 补个体，采骗 -> accepted at the call's end
        ("不客气，再见", True),
        # no farewell said: nothing is accepted
        ("好的，您本月话费是五十八元", False),
    ],
)
def test_a_live_calls_misheard_farewell_is_verified_at_its_end(
    engine: Any, tmp_path: Path, said: str, accepted: bool
) -> None:
    from qa_pipeline.live.config import load_serve_config
    from qa_pipeline.live.decoder import LiveDecoder
    from qa_pipeline.live.service import decode_options

    pack = closing_pack(tmp_path)  # as tests/test_verify.py scores the recorded path
    cfg = load_serve_config(None, {"sources": []})  # serve's default live decoding
    call = _speech(agent_says(said, "m4", RATE), 1.0)
    decoder: Any = LiveDecoder(engine, decode_options(cfg))
    if accepted:
        # the premise, set rather than hoped for: the live decode misses the farewell.
        # Whisper base's live decode read "不客气，再见" 补个体，采骗 on an AVX2 CPU and
        # 补客去，茶天 on an AMX one (2026-12-07, voice f2; whether the verification then
        # hears 再见 turns on the voice and the CPU too); what is on trial here is the
        # verification of the real audio at the call's end
        decoder = _Misheard(decoder, "补个体，采骗")

    async def one(verify: bool) -> tuple[Any, list[Any], Any]:
        worker = AsrWorker(decoder, slots=1)
        worker.start()
        lane = RuleLane()
        lv = LiveVerifier(engine, cfg.asr.verify_margin, worker, lane, pack, timeout_s=120)
        events: list[Any] = []
        s = _session(pack, worker, lane, lv if verify else None, events, "v")
        _push(s, call)
        s.flush()
        card = await asyncio.wait_for(s.finish(), 120)
        await worker.close()
        lane.close()
        return card, events, lv

    before, ev0, _ = asyncio.run(one(False))
    after, ev1, lv = asyncio.run(one(True))
    heard = [e.payload["text"] for e in ev1 if e.kind == "utterance"]
    assert heard == [e.payload["text"] for e in ev0 if e.kind == "utterance"]
    v0 = {v.rule_id: v.verdict for v in before.verdicts}
    v1 = {v.rule_id: v.verdict for v in after.verdicts}
    print(f"heard {heard}; verification: {lv.outcomes}")
    assert v0["CLOSE-THANKS"] is Verdict.FAILED, heard  # the premise: live misses it
    assert v1["BAN-POLICY"] is Verdict.PASSED
    if accepted:
        assert v1["CLOSE-THANKS"] is Verdict.PASSED
        assert lv.outcomes == {"verified": 1}
        # the failure was decided at the end: not sent as a finding either
        assert not [e for e in ev1 if e.kind == "finding"]
        assert [e.payload["rule_id"] for e in ev0 if e.kind == "finding"] == ["CLOSE-THANKS"]
    else:
        assert v1["CLOSE-THANKS"] is Verdict.FAILED
        assert lv.outcomes == {"unchanged": 1}


class _NoMetrics:
    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None
