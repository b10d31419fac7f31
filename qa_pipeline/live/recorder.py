"""Recording live calls to disk (``live.record``, off by default).

Each call's legs are written as the call goes into one file with a channel per leg (agent,
customer: the call's channels) at the source's rate, 16-bit PCM (WAV) or FLAC. Frames are
streamed to disk: only the few seconds by which one leg runs ahead of the other are held in
memory (at most ``LAG_S``; a leg further behind has silence written for it and its late
samples dropped, counted). A channel's clock gaps (lost packets, a leg that joined late)
are filled with silence as the VAD sees them, so the file keeps the call's clock.

While the call runs the file is ``<dir>/<call>.<format>.partial``: raw audio, personal data
and all. At the call's end (:meth:`CallRecording.finish`) the utterances that held personal
data are decoded again with word timing (:func:`~qa_pipeline.audio_redact.find_spans` on
each utterance's stretch of the file, on an ASR slot) and their spans beeped or silenced
(:func:`stream_redacted`: ``write_redacted`` a block at a time, so a call of hours is never
held in memory) into ``<dir>/<call>.<format>``; the partial file is then deleted. Without a Whisper engine
(or when the file cannot be read back) each such utterance is masked whole: never less.
The kept file's row goes to the store (``recordings``, migration 0350) when one is set.

A crash (SIGKILL, power cut) leaves ``.partial`` files: raw audio of calls that never
ended, so never redacted. The service deletes every ``*.partial`` file in the directory
when it starts (:func:`remove_partials`, logged with the count) before it takes calls;
they are never served (the dashboard plays only the kept, redacted files).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ..audio_redact import MaskedSpan, SpanSearch, channel_spans, held_kinds
from ..messages import AudioChunk, CallInfo, Utterance
from ..privacy.audio import BEEP_HZ, DEFAULT_PAD_S, Mode, merge_spans, redact_samples
from ..store.recordings import recording_path
from .segmenter import MAX_GAP_S

log = logging.getLogger("qa_pipeline.live.record")

PARTIAL = ".partial"
LAG_S = 10.0  # seconds one leg may run ahead of another before the other gets silence
BLOCK_S = 0.5  # frames are written in blocks of at least this much (fewer, larger writes)
_FORMATS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16")}


def remove_partials(directory: str | Path) -> int:
    """Delete the raw partial recordings a crash left behind; returns how many."""
    top = Path(directory)
    if not top.is_dir():
        return 0
    n = 0
    for p in top.glob(f"*{PARTIAL}"):
        if p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)
            n += 1
    if n:
        log.warning(
            "recordings: deleted %d partial (raw, unredacted) recording(s) of calls that "
            "never ended in %s (the service stopped mid-call)",
            n,
            top,
        )
    return n


@dataclass(frozen=True, slots=True)
class Kept:
    """A call's kept recording."""

    call_id: str
    path: Path
    sample_rate: int
    channels: int
    duration_s: float
    spans: tuple[MaskedSpan, ...]
    how: str  # "words" (word timing found the spans), "utterance" (whole utterances) or "none"


SpanFinder = Callable[[Path, list[Utterance]], SpanSearch]


class CallRecording:
    """One call's recording while it runs. Every method runs on the event loop except
    :meth:`finish`'s file work (a worker thread)."""

    def __init__(
        self, directory: str | Path, call: CallInfo, sample_rate: int, fmt: str = "wav"
    ) -> None:
        if fmt not in _FORMATS:
            raise ValueError(f"live.record.format: {fmt!r} (wav or flac)")
        self.call_id = call.call_id
        self.rate = sample_rate
        self.nch = max(1, len(call.channels))
        self.fmt = fmt
        self.path = recording_path(directory, call.call_id, fmt)
        self.partial = self.path.with_name(self.path.name + PARTIAL)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        container, subtype = _FORMATS[fmt]
        self._file: sf.SoundFile | None = sf.SoundFile(
            str(self.partial),
            "w",
            samplerate=sample_rate,
            channels=self.nch,
            subtype=subtype,
            format=container,
        )
        self._pending: list[list[np.ndarray]] = [[] for _ in range(self.nch)]
        self._held = [0] * self.nch  # samples pending per channel
        self._pos = [0] * self.nch  # per channel: samples taken (written or pending)
        self.frames = 0  # frames written
        self.late = 0  # samples dropped: their leg was more than LAG_S behind
        self.pii: list[Utterance] = []  # the utterances that held personal data

    # -- while the call runs ----------------------------------------------------------------

    def write(self, chunk: AudioChunk) -> None:
        """One frame of one leg, as the session took it (after its pacing checks)."""
        if self._file is None or not 0 <= chunk.channel < self.nch:
            return
        ch = chunk.channel
        data = np.asarray(chunk.samples, dtype=np.float32)
        # the segmenter's gap rule: a jump of the leg's clock past 20 ms is silence
        gap = int(round(chunk.start * self.rate)) - self._pos[ch]
        if self.rate // 50 < gap <= MAX_GAP_S * self.rate:
            data = np.concatenate([np.zeros(gap, dtype=np.float32), data])
        self._pos[ch] += len(data)
        behind = self.frames - (self._pos[ch] - len(data))  # of it, already written as silence
        if behind > 0:
            self.late += min(behind, len(data))
            data = data[behind:]
        if len(data):
            self._pending[ch].append(data)
            self._held[ch] += len(data)
        self._drain()

    def _drain(self, final: bool = False) -> None:
        assert self._file is not None
        n = min(self._held)
        lead = max(self._held)
        if final:
            n = lead
        elif lead - n > LAG_S * self.rate:
            n = lead - int(LAG_S * self.rate)  # a leg far behind: silence for it
        if n <= 0 or (not final and n < BLOCK_S * self.rate):
            return
        out = np.zeros((n, self.nch), dtype=np.float32)
        for c in range(self.nch):
            take = min(n, self._held[c])
            if take:
                parts = self._pending[c]
                buf = parts[0] if len(parts) == 1 else np.concatenate(parts)
                out[:take, c] = buf[:take]
                rest = buf[take:]
                self._pending[c] = [rest] if len(rest) else []
                self._held[c] -= take
            # (a leg with fewer samples held gets silence; its samples for these frames,
            # if they come, are late and dropped by write: _pos keeps the leg's clock)
        self._file.write(np.clip(out, -1.0, 1.0))
        self.frames += n

    def utterance(self, u: Utterance) -> None:
        """An utterance of the call (redacted): kept if it held personal data."""
        if held_kinds(u):
            self.pii.append(u)

    # -- at the end -------------------------------------------------------------------------

    def close_raw(self) -> None:
        """Write what is held and close the partial file (idempotent)."""
        if self._file is None:
            return
        self._drain(final=True)
        self._file.close()
        self._file = None

    def discard(self) -> None:
        """Drop the call's recording (raw audio never kept)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self.partial.unlink(missing_ok=True)

    async def finish(
        self,
        run: Callable[[Callable[[], SpanSearch]], Awaitable[SpanSearch]] | None,
        find: SpanFinder | None,
        *,
        mode: Mode = "beep",
        pad_s: float = DEFAULT_PAD_S,
    ) -> Kept | None:
        """Close the raw file, mask the spans of the utterances that held personal data
        and keep the redacted file (the raw one deleted). ``find``: the word-timed span
        search (run through ``run``, e.g. on an ASR slot); None masks those utterances
        whole. Returns None for a call with no audio (nothing kept)."""
        self.close_raw()
        if self.frames == 0:
            self.partial.unlink(missing_ok=True)
            return None
        spans: tuple[MaskedSpan, ...] = ()
        how = "none"
        if self.pii:
            whole = tuple(
                MaskedSpan(k, u.channel, u.start, u.end, "utterance", u.index)
                for u in self.pii
                for k in held_kinds(u)
            )
            spans, how = whole, "utterance"
            if find is not None:
                try:
                    job: Callable[[], SpanSearch] = lambda: find(self.partial, list(self.pii))  # noqa: E731
                    found = await run(job) if run is not None else await asyncio.to_thread(job)
                    spans = found.spans
                    how = "utterance" if found.fallbacks else "words"
                except Exception:
                    log.exception(
                        "call %s: word timing for the recording failed; the utterances that "
                        "held personal data are masked whole",
                        self.call_id,
                    )
        await asyncio.to_thread(self._keep, spans, mode, pad_s)
        return Kept(
            self.call_id,
            self.path,
            self.rate,
            self.nch,
            round(self.frames / self.rate, 3),
            spans,
            how,
        )

    def _keep(self, spans: tuple[MaskedSpan, ...], mode: Mode, pad_s: float) -> None:
        try:
            if spans:
                stream_redacted(self.partial, self.path, spans, mode=mode, pad_s=pad_s)
            else:
                self.partial.replace(self.path)
        finally:
            self.partial.unlink(missing_ok=True)  # the raw audio never outlives the call


def stream_redacted(
    src: Path,
    dst: Path,
    spans: Sequence[MaskedSpan],
    *,
    mode: Mode = "beep",
    pad_s: float = DEFAULT_PAD_S,
    block_s: float = 30.0,
) -> None:
    """:func:`~qa_pipeline.audio_redact.write_redacted` for a recording of any length: the
    file copied a block at a time (never all in memory), each block's spans masked as
    ``write_redacted`` masks them (a block never ends inside a padded span, so the result is
    the same samples). 16-bit recordings (what the recorder writes)."""
    info = sf.info(str(src))
    rate, frames = int(info.samplerate), int(info.frames)
    padded = {
        c: merge_spans(channel_spans(spans, c), pad_s, duration=frames / rate)
        for c in range(info.channels)
    }
    cuts = [(int(a * rate) - 2, int(np.ceil(b * rate)) + 2) for v in padded.values() for a, b in v]
    tmp = dst.with_name(f".{dst.name}.tmp")
    block = max(1, int(block_s * rate))
    cycle = rate // math.gcd(rate, int(BEEP_HZ))  # blocks start in the beep's phase
    with (
        sf.SoundFile(str(src)) as fin,
        sf.SoundFile(
            str(tmp),
            "w",
            samplerate=rate,
            channels=info.channels,
            subtype=info.subtype,
            format=info.format,
        ) as fout,
    ):
        pos = 0
        while pos < frames:
            end = min(frames, pos + block)
            moved = True
            while moved:  # not inside (or at the edge of) a padded span, on a whole beep cycle
                moved = False
                for a, b in cuts:
                    if a <= end < b and end < frames:
                        end, moved = min(frames, b), True
                if end < frames and end % cycle:
                    end, moved = min(frames, end + cycle - end % cycle), True
            data = fin.read(end - pos, dtype="int16", always_2d=True)
            t0, t1 = pos / rate, end / rate
            for c in range(info.channels):
                local = [
                    (a - t0, b - t0)
                    for a, b in channel_spans(spans, c)
                    if a - pad_s < t1 and b + pad_s > t0
                ]
                if local:
                    data[:, c] = redact_samples(data[:, c], rate, local, mode, pad_s)
            fout.write(data)
            pos = end
    tmp.replace(dst)


def whisper_spans(engine: Any) -> SpanFinder | None:
    """The word-timed span search on ``engine`` (None when it is not a Whisper engine: a
    test's stand-in; the utterances are then masked whole). Each utterance's stretch of the
    file is read on its own (resampled to 16 kHz as the pipeline reads a call), so a long
    recording is never held in memory."""
    from ..asr.engine import AsrEngine

    if not isinstance(engine, AsrEngine):
        return None

    def find(path: Path, utterances: list[Utterance]) -> SpanSearch:
        from ..audio import CallAudio, resample
        from ..audio_redact import find_spans
        from ..messages import replace

        info = sf.info(str(path))
        rate = int(info.samplerate)
        spans: list[MaskedSpan] = []
        decodes, seconds = 0, 0.0
        for u in utterances:
            if u.channel >= info.channels:
                continue
            a = max(0, int(u.start * rate))
            b = min(int(info.frames), int(np.ceil(u.end * rate)))
            if b <= a:
                continue
            data, _ = sf.read(str(path), start=a, stop=b, dtype="float32", always_2d=True)
            ch = resample(np.ascontiguousarray(data[:, u.channel]), rate)
            empty = np.zeros(0, dtype=np.float32)
            channels = tuple(ch if c == u.channel else empty for c in range(info.channels))
            audio = CallAudio(str(path), channels, (), rate, info.format)
            off = a / rate
            found = find_spans(engine, audio, [replace(u, start=u.start - off, end=u.end - off)])
            decodes += found.timed_decodes
            seconds += found.decode_seconds
            spans.extend(
                dataclasses.replace(s, start=s.start + off, end=s.end + off) for s in found.spans
            )
        return SpanSearch(tuple(spans), decodes, seconds)

    return find
