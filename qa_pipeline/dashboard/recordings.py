"""Where the dashboard finds a call's recording, and the evidence clips cut from it.

A lookup is a blocking callable ``call_id -> Recording | None`` (run in a worker thread):
:func:`store_recordings` reads the store's ``recordings`` table (``serve`` and ``score
--store`` write it), :func:`dir_recordings` the files ``serve`` keeps in ``live.record.dir``
(always redacted: the raw audio never outlives the call's end), :func:`first_of` asks
several in turn.

:func:`clip_wav` cuts a clip: ``[start - PAD_S, end + PAD_S]`` within the recording, at
most ``MAX_CLIP_S`` long, as 16-bit WAV at the recording's rate and channels. Only a
redacted recording is cut (the server refuses the others).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import QAError
from ..store.recordings import Recording, get_recording, recording_path

PAD_S = 0.5  # seconds of context each side of an evidence span
MAX_CLIP_S = 60.0  # a clip (span and padding) is at most this long

RecordingLookup = Callable[[str], Recording | None]


class ClipError(QAError):
    """A clip that cannot be cut (bad bounds, an unreadable file); the message says why."""


def store_recordings(target: str) -> RecordingLookup:
    """Recordings from the store at ``target`` (a path or a postgresql:// URL), opened for
    each lookup and only read (a SQLite file not there yet, or a store before migration
    0350: none). Not a read-only open: that refuses a store whose schema is behind the code
    (a later migration not yet applied by a writer), and the recordings table needs none of
    them; the dashboard never migrates a store."""
    from ..store import Store, store_exists

    def lookup(call_id: str) -> Recording | None:
        if not store_exists(target):
            return None
        with Store(target, migrate=False) as db:
            return get_recording(db, call_id)

    return lookup


def dir_recordings(directory: str | Path, fmt: str = "wav") -> RecordingLookup:
    """The recordings ``serve`` keeps in ``directory`` (``live.record.dir``), by name."""

    def lookup(call_id: str) -> Recording | None:
        path = recording_path(directory, call_id, fmt)
        if not path.is_file() or path.is_symlink():
            return None
        info = sf.info(str(path))
        return Recording(
            call_id,
            str(path.absolute()),
            int(info.samplerate),
            int(info.channels),
            float(info.duration),
            True,
            path.stat().st_mtime,
        )

    return lookup


def first_of(*lookups: RecordingLookup) -> RecordingLookup:
    """The first recording any of ``lookups`` finds."""

    def lookup(call_id: str) -> Recording | None:
        for one in lookups:
            found = one(call_id)
            if found is not None:
                return found
        return None

    return lookup


def clip_bounds(start: str | None, end: str | None, duration: float) -> tuple[float, float]:
    """The clip's ``[from, to)`` in seconds for the evidence span ``start``-``end`` (query
    values): padded by ``PAD_S``, within the recording, at most ``MAX_CLIP_S``."""
    try:
        s = float(start) if start is not None else math.nan
        e = float(end) if end is not None else math.nan
    except ValueError:
        raise ClipError("start and end: seconds (numbers), e.g. ?start=3.2&end=5.0") from None
    if not (math.isfinite(s) and math.isfinite(e)) or s < 0 or e <= s:
        raise ClipError("start and end: seconds with 0 <= start < end")
    if e - s + 2 * PAD_S > MAX_CLIP_S:
        raise ClipError(f"a clip is at most {MAX_CLIP_S:.0f} s (span and padding)")
    if s >= duration:
        raise ClipError(f"start {s:g} s is past the recording's end ({duration:.1f} s)")
    return max(0.0, s - PAD_S), min(duration, e + PAD_S)


def clip_wav(rec: Recording, start: str | None, end: str | None) -> bytes:
    """The clip of ``rec`` around ``start``-``end`` as a WAV file (bytes)."""
    if not rec.redacted:
        raise ClipError("the recording is not redacted")
    path = Path(rec.path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise ClipError(f"the recording cannot be read ({path.name}: {e})") from None
    a, b = clip_bounds(start, end, float(info.duration))
    rate = int(info.samplerate)
    first, last = int(a * rate), min(int(info.frames), int(math.ceil(b * rate)))
    samples, _ = sf.read(str(path), start=first, stop=last, dtype="int16", always_2d=True)
    buf = io.BytesIO()
    sf.write(buf, np.ascontiguousarray(samples), rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()
