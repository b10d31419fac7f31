"""Non-speech telephone audio, generated with ``sox``: what a call-centre recording holds
when nobody speaks.

Every kind is made from ``sox synth`` layers (repeatable: ``sox -R``), mixed and levelled
here, and written as 8 kHz (or 16 kHz) mu-law or PCM, mono or dual-channel:

* ``noise-{white,pink,brown}-<dB>``: line noise at an RMS level (dBFS), band-limited to the
  telephone band; ``hum``: 50 Hz mains hum with harmonics over hiss;
* ``tone-1k``: the 1 kHz test tone (digital milliwatt);
* ``dtmf``: keyed digit strings (an IVR menu choice, a card number) with pauses;
* ``hold-music``: a music-on-hold-like loop, plucked chords under a sine melody;
* ``fax-cng`` (the calling fax: 1100 Hz, 0.5 s on / 3 s off) and ``fax-ced`` (the answering
  fax: 2100 Hz answer tone, then the V.21 1650/1850 Hz preamble);
* ``dead-line``: digital silence with a faint hiss; ``dead-digital``: digital silence on
  one channel, a faint hiss on the other (a file of pure zeros is reported as silent);
* ``dial``, ``ringback``, ``busy``, ``congestion``: Chinese call-progress tones (450 Hz
  continuous, 1 s on / 4 s off, 0.35 / 0.35 s, 0.7 / 0.7 s).

:func:`write_nonspeech` writes one file; :data:`KINDS` lists every kind. None of it holds a
word: a transcript of any of these files must be empty.
"""

from __future__ import annotations

import subprocess
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from .generate import SampleError

Audio = np.ndarray
TELEPHONE_BAND = ("sinc", "300-3400")


def sox_synth(seconds: float, *effects: str, rate: int = 8000) -> Audio:
    """``sox -n ... synth`` output (or any effect chain on silence) as float32 mono."""
    cmd = ["sox", "-R", "-q", "-n", "-t", "raw", "-e", "floating-point", "-b", "32"]
    cmd += ["-r", str(rate), "-c", "1", "-", "synth", f"{seconds:g}", *effects]
    try:
        out = subprocess.run(cmd, capture_output=True, check=True, timeout=120).stdout
    except FileNotFoundError as e:
        raise SampleError("sox is not installed: sudo apt-get install -y sox") from e
    except subprocess.CalledProcessError as e:
        err = (e.stderr or b"").decode("utf-8", "replace").strip()
        raise SampleError(f"sox failed: {' '.join(cmd)}: {err}") from e
    audio = np.frombuffer(out, dtype="<f4").astype(np.float32)
    n = int(round(seconds * rate))
    return np.pad(audio[:n], (0, max(0, n - len(audio))))


def _gain(audio: Audio, rms_dbfs: float) -> Audio:
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    return audio * (10 ** (rms_dbfs / 20.0) / rms) if rms > 0 else audio


def _gated(audio: Audio, rate: int, on_s: float, off_s: float, offset_s: float = 0.0) -> Audio:
    """``audio`` switched on for ``on_s`` and off for ``off_s``, repeating (5 ms ramps)."""
    t = (np.arange(len(audio)) / rate + offset_s) % (on_s + off_s)
    gate = (t < on_s).astype(np.float32)
    ramp = max(1, int(0.005 * rate))
    kernel = np.ones(ramp, dtype=np.float32) / ramp
    return audio * np.convolve(gate, kernel, mode="same")


def _tile(pattern: Audio, n: int) -> Audio:
    return np.tile(pattern, n // len(pattern) + 1)[:n].astype(np.float32)


# -- the kinds ---------------------------------------------------------------------------


def noise(colour: str, level_dbfs: float, seconds: float, rate: int) -> Audio:
    raw = sox_synth(seconds, f"{colour}noise", *TELEPHONE_BAND, rate=rate)
    return _gain(raw, level_dbfs)


def hum(seconds: float, rate: int) -> Audio:
    mains = sox_synth(seconds, "sine", "50", rate=rate)
    third = sox_synth(seconds, "sine", "150", rate=rate)
    fifth = sox_synth(seconds, "sine", "250", rate=rate)
    hiss = sox_synth(seconds, "whitenoise", *TELEPHONE_BAND, rate=rate)
    return _gain(mains, -32) + _gain(third, -38) + _gain(fifth, -44) + _gain(hiss, -50)


def tone(freq: float, level_dbfs: float, seconds: float, rate: int) -> Audio:
    return _gain(sox_synth(seconds, "sine", f"{freq:g}", rate=rate), level_dbfs)


DTMF_ROWS = {"1": 697, "2": 697, "3": 697, "A": 697, "4": 770, "5": 770, "6": 770, "B": 770}
DTMF_ROWS |= {"7": 852, "8": 852, "9": 852, "C": 852, "*": 941, "0": 941, "#": 941, "D": 941}
DTMF_COLS = {"1": 1209, "4": 1209, "7": 1209, "*": 1209, "2": 1336, "5": 1336, "8": 1336}
DTMF_COLS |= {"0": 1336, "3": 1477, "6": 1477, "9": 1477, "#": 1477}
DTMF_COLS |= {"A": 1633, "B": 1633, "C": 1633, "D": 1633}


def dtmf(keys: str, seconds: float, rate: int, *, on_s: float = 0.1, off_s: float = 0.1) -> Audio:
    """Digit strings keyed one after another; a space is a 1.5 s pause. Repeats to fill."""
    parts: list[Audio] = []
    for k in keys:
        if k == " ":
            parts.append(np.zeros(int(1.5 * rate), dtype=np.float32))
            continue
        low = sox_synth(on_s, "sine", str(DTMF_ROWS[k]), rate=rate)
        high = sox_synth(on_s, "sine", str(DTMF_COLS[k]), rate=rate)
        parts.append(_gated(_gain(low, -12) + _gain(high, -10), rate, on_s, 1.0))
        parts.append(np.zeros(int(off_s * rate), dtype=np.float32))
    return _tile(np.concatenate(parts), int(seconds * rate))


# A four-bar loop: I - V - vi - IV in C, arpeggiated plucks under a sine melody.
_CHORDS: tuple[tuple[str, ...], ...] = (
    ("C3", "E3", "G3", "C4"),
    ("G2", "D3", "G3", "B3"),
    ("A2", "E3", "A3", "C4"),
    ("F2", "C3", "F3", "A3"),
)
_MELODY: tuple[str, ...] = tuple(
    ["E5", "D5", "C5", "D5", "D5", "B4", "G4", "B4", "C5", "E5", "A4", "C5", "A4", "C5", "F5", "E5"]
)


def hold_music(seconds: float, rate: int, *, beat_s: float = 0.3) -> Audio:
    arpeggio: list[str] = []
    for chord in _CHORDS:
        for note in (*chord, *chord[::-1]):
            arpeggio += [":", "synth", f"{beat_s:g}", "pluck", note]
    # sox chains synth runs separated by ':' into one stream
    plucks = sox_synth(beat_s, "pluck", _CHORDS[0][0], *arpeggio, rate=rate)[
        : int(round(beat_s * rate)) * 32
    ]
    melody_notes: list[str] = []
    for note in _MELODY[1:]:
        melody_notes += [":", "synth", f"{2 * beat_s:g}", "sine", note, "fade", "0.02", "-0", "0.1"]
    melody = sox_synth(
        2 * beat_s, "sine", _MELODY[0], "fade", "0.02", "-0", "0.1", *melody_notes, rate=rate
    )
    n = min(len(plucks), len(melody))
    loop = _gain(plucks[:n], -24) + _gain(melody[:n], -26)
    return _tile(loop, int(seconds * rate))


def fax_cng(seconds: float, rate: int) -> Audio:
    return _gated(tone(1100, -14, seconds, rate), rate, 0.5, 3.0)


def fax_ced(seconds: float, rate: int) -> Audio:
    """2100 Hz answer tone for 3 s, 75 ms gap, then V.21 channel-2 HDLC flags (0x7E) at
    300 bit/s, 1650 Hz (mark) / 1850 Hz (space); the exchange repeats to fill."""
    ced = tone(2100, -14, 3.0, rate)
    gap = np.zeros(int(0.075 * rate), dtype=np.float32)
    bits = np.tile([0, 1, 1, 1, 1, 1, 1, 0], 120)  # one second of flags
    freq = np.repeat(np.where(bits == 1, 1650.0, 1850.0), rate // 300 + 1)[: rate * 3]
    fsk = (np.sin(2 * np.pi * np.cumsum(freq) / rate) * 10 ** (-14 / 20) * np.sqrt(2)).astype(
        np.float32
    )
    pause = np.zeros(int(2.0 * rate), dtype=np.float32)
    return _tile(np.concatenate([ced, gap, fsk, pause]), int(seconds * rate))


def dead_line(seconds: float, rate: int, level_dbfs: float = -66.0) -> Audio:
    """A faint hiss: an open line nobody speaks on (μ-law keeps a little of it)."""
    return noise("white", level_dbfs, seconds, rate)


def call_progress(on_s: float, off_s: float, seconds: float, rate: int) -> Audio:
    """China's 450 Hz call-progress tone, cadenced (off_s 0 = continuous dial tone)."""
    t = tone(450, -16, seconds, rate)
    return t if off_s <= 0 else _gated(t, rate, on_s, off_s)


Builder = Callable[[float, int], Audio]


def _noise_kind(colour: str, level_dbfs: float) -> Builder:
    return lambda s, r: noise(colour, level_dbfs, s, r)


KINDS: dict[str, Builder] = {
    **{
        f"noise-{colour}-{-level}": _noise_kind(colour, level)
        for colour in ("white", "pink", "brown")
        for level in (-50, -35, -20)
    },
    "hum": hum,
    "tone-1k": lambda s, r: tone(1000, -10, s, r),
    "dtmf": lambda s, r: dtmf("1 2 0 13812345678# 6222020200112233445#  ", s, r),
    "hold-music": hold_music,
    "fax-cng": fax_cng,
    "fax-ced": fax_ced,
    "dead-line": dead_line,
    "dial": lambda s, r: call_progress(1.0, 0.0, s, r),
    "ringback": lambda s, r: call_progress(1.0, 4.0, s, r),
    "busy": lambda s, r: call_progress(0.35, 0.35, s, r),
    "congestion": lambda s, r: call_progress(0.7, 0.7, s, r),
}
"""Every non-speech kind: name -> builder(seconds, rate) -> float32 mono audio."""

ENCODINGS = {"ulaw": "ULAW", "pcm": "PCM_16"}


def render(kind: str, seconds: float, rate: int = 8000) -> Audio:
    if kind == "dead-digital":
        return np.zeros(int(seconds * rate), dtype=np.float32)
    if kind not in KINDS:
        raise SampleError(f"no non-speech kind {kind!r}; known: {', '.join(KINDS)}")
    return np.clip(KINDS[kind](seconds, rate), -1.0, 1.0).astype(np.float32)


def write_nonspeech(
    path: str | Path,
    kinds: str | Sequence[str],
    seconds: float,
    *,
    rate: int = 8000,
    encoding: str = "ulaw",
) -> Path:
    """Write a WAV of one non-speech kind per channel (one kind = mono). ``dead-digital``
    is pure digital silence (only usable beside another channel: a file whose every
    channel is silent is reported as silent, not scored)."""
    names = [kinds] if isinstance(kinds, str) else list(kinds)
    if encoding not in ENCODINGS:
        raise SampleError(f"encoding must be one of {', '.join(ENCODINGS)}, not {encoding!r}")
    chans = []
    for i, k in enumerate(names):
        a = render(k, seconds, rate)
        # the same kind on two channels is not the same signal (a second line)
        if i and k in names[:i] and k not in ("dead-digital",):
            a = np.roll(a, int(zlib.crc32(f"{k}{i}".encode()) % max(1, len(a))))
        chans.append(a)
    data = np.stack(chans, axis=1) if len(chans) > 1 else chans[0]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(out), data, rate, subtype=ENCODINGS[encoding], format="WAV")
    return out
