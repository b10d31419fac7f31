"""A call's messages on the utterances topic, as the ASR workers publish them (for the
evaluator's tests and benchmarks): per leg, :class:`~qa_pipeline.wire.LegStart`, one
:class:`~qa_pipeline.wire.WireUtterance` per segment (by ``seq``), watermarks every
``step_s`` of call clock and :class:`~qa_pipeline.wire.LegEnd`, the legs interleaved by
call clock as ingest interleaves them."""

from __future__ import annotations

import random
from collections.abc import Sequence

from qa_pipeline.messages import CallInfo, replace
from qa_pipeline.transcript import Transcript
from qa_pipeline.wire import LegEnd, LegStart, Watermark, WireMessage, WireUtterance

__all__ = ["interleave", "utterance_stream"]


def utterance_stream(
    t: Transcript,
    *,
    step_s: float = 0.5,
    session_id: str = "",
    dropped: Sequence[int] = (),
) -> list[WireMessage]:
    """``t``'s utterances as the utterances topic carries them. ``dropped``: indices of
    utterances sent as segments the ASR gave no words for (``dropped: "no_speech"``)."""
    info: CallInfo = t.call
    if session_id:
        info = replace(info, session_id=session_id)
    cid = info.call_id
    starts: list[WireMessage] = []
    keyed: list[tuple[tuple[float, int, int, int], WireMessage]] = []
    ends = t.ended.channel_ends
    for ch, role in enumerate(info.channels):
        starts.append(LegStart(call_id=cid, channel=ch, role=role, call=info))
        mine = sorted((u for u in t.utterances if u.channel == ch), key=lambda u: u.start)
        last = 0.0
        for seq, u in enumerate(mine):
            if u.index in dropped:
                m = WireUtterance(call_id=cid, channel=ch, seq=seq, dropped="no_speech")
            else:
                m = WireUtterance(call_id=cid, channel=ch, seq=seq, utterance=replace(u, index=seq))
            # published when decoded: after the segment ended
            keyed.append(((u.end, 1, ch, seq), m))
            last = max(last, u.end)
        end = max(ends[ch] if ch < len(ends) else t.ended.end, last)
        k = 1
        while (wt := round(k * step_s, 3)) < end:
            # a watermark passes on only after every segment starting before it was decoded
            due = max([wt, *(u.end for u in mine if u.start < wt)])
            keyed.append(((due, 2, ch, k), Watermark(call_id=cid, channel=ch, time=wt)))
            k += 1
        keyed.append(((end, 3, ch, 0), LegEnd(call_id=cid, channel=ch, end=round(end, 3))))
    keyed.sort(key=lambda km: km[0])
    return [*starts, *(m for _, m in keyed)]


def interleave(
    msgs: Sequence[WireMessage], rng: random.Random, *, duplicates: float = 0.0
) -> list[WireMessage]:
    """The legs' messages interleaved at random (each leg's own order kept), with a share
    ``duplicates`` of them sent again later (at-least-once delivery, a worker's replay)."""
    legs: dict[int, list[WireMessage]] = {}
    for m in msgs:
        legs.setdefault(m.channel, []).append(m)
    out: list[WireMessage] = []
    pos = dict.fromkeys(legs, 0)
    while any(pos[c] < len(legs[c]) for c in legs):
        c = rng.choice([c for c in legs if pos[c] < len(legs[c])])
        m = legs[c][pos[c]]
        pos[c] += 1
        out.append(m)
        if duplicates and rng.random() < duplicates:
            # the same message again, a little later in the same leg (a replay)
            legs[c].insert(min(len(legs[c]), pos[c] + rng.randrange(0, 4)), m)
    return out
