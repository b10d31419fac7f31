"""A call session on its own, without the service: frames pushed in, the shared ASR worker
answering the session directly, utterances, findings and the scorecard out through the
callback it was given (real VAD on the real clips, a stub decoder)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from qa_pipeline.asr.engine import AsrResult
from qa_pipeline.config import VadConfig
from qa_pipeline.live.asr_worker import AsrJob, AsrWorker
from qa_pipeline.live.decoder import DecodeOptions
from qa_pipeline.live.evaluator import RuleLane
from qa_pipeline.live.metrics import LiveMetrics
from qa_pipeline.live.session import CallSession
from qa_pipeline.messages import AudioChunk, CallInfo, Role, SpeechSegment
from qa_pipeline.rules import load_pack
from qa_pipeline.sources.base import EndReason

TEXT = {Role.AGENT: "甚至出现交易几乎停滞的情况", Role.CUSTOMER: "换一首歌"}


class RoleDecoder:
    """The text each clip says, by channel; every batch recorded."""

    def __init__(self) -> None:
        self.opts = DecodeOptions(window="fitted")
        self.batches: list[list[str]] = []

    def decode(self, segs: Sequence[SpeechSegment]) -> list[AsrResult]:
        self.batches.append([s.call_id for s in segs])
        return [AsrResult(s, TEXT[s.role], TEXT[s.role], 0.95, 0.0, "zh", 8, 0.01) for s in segs]


def test_a_session_owns_its_call_end_to_end(ban_call: np.ndarray, pack_path: Path) -> None:
    pack = load_pack(str(pack_path))
    decoder = RoleDecoder()
    events: list[Any] = []
    sent: list[AsrJob] = []

    async def main() -> Any:
        worker = AsrWorker(decoder, slots=1)  # type: ignore[arg-type]
        worker.start()
        lane = RuleLane()
        s = CallSession(
            CallInfo("solo", channels=(Role.AGENT, Role.CUSTOMER)),
            8000,
            vad=VadConfig(),
            pack=pack,
            emit=events.append,
            metrics=LiveMetrics(CollectorRegistry()),
            source="test",
            asr=worker,
            rules=lane,
        )
        for i in range(0, ban_call.shape[1], 160):  # 20 ms frames, both channels
            for ch in (0, 1):
                frame = ban_call[ch, i : i + 160]
                sent.extend(
                    s.push(AudioChunk("solo", ch, s.call.channels[ch], i / 8000, 8000, frame))
                )
            await asyncio.sleep(0)
        sent.extend(s.flush())
        card = await asyncio.wait_for(s.finish(EndReason.STOP), 10)
        await worker.close()
        lane.close()
        return s, card

    s, card = asyncio.run(main())
    # each job is the call's own immutable message, answered to the session itself
    assert len(sent) == 2 and {j.reply_to for j in sent} == {s}
    assert [j.seq for j in sent] == [0, 1] and {j.session_id for j in sent} == {s.call.session_id}
    assert sum(len(b) for b in decoder.batches) == 2
    kinds = [e.kind.value for e in events]
    assert kinds.count("utterance") == 2 and kinds[-1] == "scorecard"
    texts = [e.payload["text"] for e in events if e.kind.value == "utterance"]
    assert texts == [TEXT[Role.AGENT], TEXT[Role.CUSTOMER]]
    # the agent's banned word: a finding emitted after its utterance, before the scorecard
    first_finding = next(i for i, e in enumerate(events) if e.kind.value == "finding")
    assert 0 < first_finding < len(events) - 1
    assert card.complete is True
    assert "LIVE-BAN" in {f.rule_id for f in card.findings}
    assert s.in_flight == 0 and s.scorecard == card
