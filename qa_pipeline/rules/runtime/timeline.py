"""Conversation timing from the utterance stream: gaps, silences, talk-over.

Utterances arrive roughly in order of their *end* (the two channels interleave). Timing
needs them in order of *start*, with overlaps known, so the timeline holds each utterance
until it is safe: every channel has either spoken past its start (a channel's utterances
arrive in order and do not overlap) or the call clock is more than the longest possible
utterance (``max_utterance_seconds``) past it. Released utterances produce:

* ``response``: end of a customer turn -> start of the next agent turn (``seconds`` = gap);
* ``silence``: neither side speaking between two utterances (mutual silence);
* ``agent_gap``: time between two agent utterances, ``other`` = customer speech inside it;
* ``overlap``: a speaker starting inside the other's speech (``seconds`` = overlap).
"""

from __future__ import annotations

from typing import Final

from ...messages import Role
from .nodes import INF, NO_ITEMS, TEvent, UttCtx

_AGENT: Final = Role.AGENT
_CUSTOMER: Final = Role.CUSTOMER


class Timeline:
    def __init__(
        self, channels: int, max_utterance: float, interest: dict[str, float] | None = None
    ) -> None:
        inf = INF
        it = interest or {}
        self._i_resp = it.get("response", inf)
        self._i_sil = it.get("silence", inf)
        self._i_gap = it.get("agent_gap", inf)
        self._i_ov = it.get("overlap", inf)
        # utterances held back, in order of start (ties: in arrival order); mostly one or
        # two, arriving nearly in order: a list kept sorted by insertion, not a heap
        self._held: list[UttCtx] = []
        self._wm: list[float] = [0.0] * max(channels, 1)  # per channel: speech heard up to
        self._max = max_utterance
        self._speech_end: float | None = None
        self._end_ctx: UttCtx | None = None
        self._prev: UttCtx | None = None
        self._agent: UttCtx | None = None
        self._cust: UttCtx | None = None
        self._agent_end = 0.0  # max end of agent speech processed
        self._cust_end = 0.0
        self._cust_in_gap = 0.0
        self.gaps: list[float] = []
        self.silences: list[float] = []
        self.overlaps = 0

    def push(self, x: UttCtx, now: float) -> list[TEvent]:
        u = x
        held = self._held
        start = u.start
        i = len(held)
        while i > 0 and held[i - 1].start > start:
            i -= 1
        if i == len(held):
            held.append(x)
        else:
            held.insert(i, x)
        wm = self._wm
        ch = max(u.channel, 0)
        while ch >= len(wm):  # a channel the call info did not announce
            wm.append(0.0)
        if u.end > wm[ch]:
            wm[ch] = u.end
        return self.release(now)

    def release(self, now: float) -> list[TEvent]:
        floor = now - self._max
        bound = INF
        for w in self._wm:
            if w < floor:
                w = floor
            if w < bound:
                bound = w
        held = self._held
        if not held or held[0].start > bound:
            return NO_ITEMS  # nothing due: no list made
        k = 1
        n = len(held)
        while k < n and held[k].start <= bound:
            k += 1
        due = held[:k]
        del held[:k]
        out: list[TEvent] = []
        for x in due:
            self._process(x, out)
        return out

    def flush(self) -> list[TEvent]:
        out: list[TEvent] = []
        held = self._held
        self._held = []
        for x in held:
            self._process(x, out)
        return out

    def _process(self, x: UttCtx, out: list[TEvent]) -> None:
        start, end, role = x.start, x.end, x.role
        se = self._speech_end
        if se is not None and start > se:
            gap = start - se
            self.silences.append(gap)
            if gap >= self._i_sil:
                out.append(TEvent("silence", se, start, gap, None, self._end_ctx, x))
        if role == _AGENT:
            prev = self._prev
            cust = self._cust
            if prev is not None and prev.role == _CUSTOMER and cust is not None:
                gap = max(start - cust.end, 0.0)
                self.gaps.append(gap)
                if gap >= self._i_resp:
                    out.append(TEvent("response", cust.end, start, gap, _AGENT, cust, x))
            if cust is not None and cust.start < start < self._cust_end:
                ov = min(self._cust_end, end) - start
                self.overlaps += 1
                if ov >= self._i_ov:
                    out.append(TEvent("overlap", start, start + ov, ov, _AGENT, cust, x))
            ag = self._agent
            if ag is not None and start > self._agent_end:
                g = start - self._agent_end
                if g >= self._i_gap:
                    out.append(
                        TEvent(
                            "agent_gap",
                            self._agent_end,
                            start,
                            g,
                            _AGENT,
                            ag,
                            x,
                            self._cust_in_gap,
                        )
                    )
            self._agent = x
            self._agent_end = max(self._agent_end, end)
            self._cust_in_gap = 0.0
        elif role == _CUSTOMER:
            ag = self._agent
            if ag is not None and ag.start < start < self._agent_end:
                ov = min(self._agent_end, end) - start
                if ov >= self._i_ov:
                    out.append(TEvent("overlap", start, start + ov, ov, _CUSTOMER, ag, x))
            self._cust_in_gap += max(end - max(start, self._agent_end), 0.0)
            self._cust = x
            self._cust_end = max(self._cust_end, end)
        if se is None or end > se:
            self._speech_end = end
            self._end_ctx = x
        self._prev = x
