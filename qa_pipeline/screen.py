"""A cheap non-speech screen for VAD segments, before they reach Whisper.

webrtcvad opens segments on anything loud and voice-band: line noise above about -35 dBFS,
test tones, DTMF, fax and call-progress tones, music on hold. Whisper, given such a
segment, invents text with confident log-probs (在那里, 中文字幕制作...), so the
guard's no-speech rule cannot always catch it afterwards. Two properties of the segment's
spectrum in the telephone band (250-3400 Hz, 64 ms Hann frames, 20 ms hop) tell these
apart from speech, at either VAD rate:

* **tonal**: in most of its active frames (within 20 dB of its loudest), the two strongest
  spectral peaks (+-31 Hz each) hold more than 80 % of the band's energy. Tones, DTMF
  (two tones), fax (CNG 1100 Hz, CED 2100 Hz, V.21 FSK), Chinese 450 Hz call-progress
  tones do; speech spreads its energy over many harmonics and formants that move.
  A tone's frequency also stands still: the strongest peak of consecutive tonal frames
  moves less than 2 Hz in at least 95 % of them (tones, DTMF, fax, call-progress tones:
  >= 0.99). A near-monotone voice can be as tonal as a tone (espeak-ng's narrow-pitch
  ``steph`` voice: share up to 0.98; the share alone dropped 94 of the 595 speech segments
  of the untuned corpus's seed 3, most of them this voice's), but its pitch drifts:
  steadiness <= 0.89 there, median 0.4.
* **stationary**: its frame energy barely moves: the standard deviation of the active
  frames' level (within 30 dB of its loudest) is below a few dB. Line noise, hum, a steady
  tone, compressed music do; speech rises and falls with every syllable (far-field speech
  measured 3.8 dB, speech under noise at 5 dB SNR 1.8 dB, line noise at most 1.0 dB).

:func:`nonspeech_reason` returns ``"tonal"``, ``"stationary"`` or ``None`` (keep). Segments
shorter than a few frames are kept: too short to judge (and dropped by the VAD's minimum
length anyway).

Measured on the VAD segments of the generated non-speech kinds (:mod:`.samples.nonspeech`,
mu-law and PCM) and of real speech (the shared zh/en clips at 16 kHz and 8 kHz mu-law, the
far-field clips, the generated calls, the zh clips under white/pink noise at 5 and 10 dB
below their speech level): tonal fraction >= 0.86 for every tone kind (DTMF lowest),
<= 0.67 for speech (telephone IVR prompts highest); level spread <= 0.72 dB for noise, hum
and hold music, >= 1.72 dB for speech (the noisiest mix lowest). Defaults sit between:
0.75 and 1.2 dB (``vad.nonspeech_*``).
"""

from __future__ import annotations

import numpy as np

from .messages import Samples

FRAME_S = 0.064
HOP_S = 0.020
BAND_HZ = (250.0, 3400.0)
PEAK_HALF_WIDTH = 2  # bins either side of a peak (15.6 Hz bins: +-31 Hz)
TONAL_FRAME_SHARE = 0.8  # a frame is tonal when its two peaks hold this much energy
STEADY_HZ = 2.0  # a tonal frame is steady when its strongest peak moved less than this
STEADY_SHARE = 0.95  # ... and a tonal segment's pairs of tonal frames are this steady
MIN_FRAMES = 8


def _frame_power(samples: Samples, rate: int) -> np.ndarray:
    n = int(round(FRAME_S * rate))
    hop = int(round(HOP_S * rate))
    x = np.asarray(samples, dtype=np.float32)
    if len(x) < n:
        return np.zeros((0, 0))
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[::hop]
    spec = np.fft.rfft(frames * np.hanning(n).astype(np.float32), axis=1)
    freqs = np.fft.rfftfreq(n, 1.0 / rate)
    band = (freqs >= BAND_HZ[0]) & (freqs <= BAND_HZ[1])
    return (np.abs(spec[:, band]) ** 2).astype(np.float64) + 1e-12


def _two_peak_share(power: np.ndarray) -> np.ndarray:
    """Per frame: energy within +-PEAK_HALF_WIDTH bins of its two strongest local maxima,
    as a share of the frame's band energy."""
    rows, cols = power.shape
    inner = power[:, 1:-1]
    is_peak = (inner > power[:, :-2]) & (inner >= power[:, 2:])
    peaks = np.where(is_peak, inner, 0.0)
    top = np.argsort(peaks, axis=1)[:, -2:] + 1  # bin index of the two largest maxima
    csum = np.concatenate([np.zeros((rows, 1)), np.cumsum(power, axis=1)], axis=1)
    r = np.arange(rows)[:, None]
    lo = np.clip(top - PEAK_HALF_WIDTH, 0, cols)
    hi = np.clip(top + PEAK_HALF_WIDTH + 1, 0, cols)
    has_peak = np.take_along_axis(peaks, top - 1, axis=1) > 0
    around = np.where(has_peak, csum[r, hi] - csum[r, lo], 0.0).sum(axis=1)
    return np.minimum(1.0, around / csum[:, -1])


def _steady_share(power: np.ndarray, tonal: np.ndarray, rate: int) -> float:
    """Of the pairs of consecutive frames that are both tonal, the share whose strongest
    peak (parabolic interpolation on the log spectrum) moved less than ``STEADY_HZ``."""
    both = tonal[1:] & tonal[:-1]
    if not both.any():
        return 0.0
    cols = power.shape[1]
    k = np.clip(np.argmax(power, axis=1), 1, cols - 2)
    r = np.arange(len(k))
    lp = np.log(power)
    a, b, c = lp[r, k - 1], lp[r, k], lp[r, k + 1]
    den = a - 2.0 * b + c
    delta = np.where(np.abs(den) > 1e-12, 0.5 * (a - c) / np.where(den == 0, 1.0, den), 0.0)
    hz = (k + np.clip(delta, -1.0, 1.0)) * rate / round(FRAME_S * rate)
    steady = (np.abs(np.diff(hz)) < STEADY_HZ) & both
    return float(steady.sum() / both.sum())


def nonspeech_reason(
    samples: Samples, rate: int, *, tonal_fraction: float, min_spread_db: float
) -> str | None:
    """``"tonal"`` or ``"stationary"`` when the segment is not speech, else ``None``.

    ``tonal_fraction``: share of active frames that must be tonal (above 1 = never);
    ``min_spread_db``: frame-level spread below which the segment is stationary (0 = never).
    """
    power = _frame_power(samples, rate)
    if power.shape[0] < MIN_FRAMES or power.shape[1] < 8:
        return None
    level = 10.0 * np.log10(power.sum(axis=1))
    top = float(level.max())
    active = level > top - 20.0
    if tonal_fraction <= 1.0:
        tonal = _two_peak_share(power) > TONAL_FRAME_SHARE
        if (
            float(np.mean(tonal[active])) >= tonal_fraction
            and _steady_share(power, tonal & active, rate) >= STEADY_SHARE
        ):
            return "tonal"
    spread = float(np.std(level[level > top - 30.0]))
    if spread < min_spread_db:
        return "stationary"
    return None
