"""Speaker roles on mono recordings: two voices told apart, then named from what they say.

A dual-channel call says who speaks on each channel (``audio.channels``). A mono recording
does not, and every utterance used to be one ``unknown`` speaker, so every agent- and
customer-scoped verdict was ``uncertain``. With ``audio.mono_roles: auto`` (the default)
a mono call goes through two steps, the way call-centre QA suites do it (Alibaba's: mono
calls split by diarization, the agent being the speaker whose first sentence hits the
agent phrase list):

1. **Speaker turns, before the ASR** (:func:`speaker_turns`). The VAD cuts the channel at
   short pauses (``mono_split_ms``, not the 600 ms that ends an utterance), each piece gets
   a voice print (median log F0 from an autocorrelation pitch tracker, and mean MFCCs over
   the telephone band, numpy only), the pieces are split into two clusters (weighted
   2-means on standardised prints), and consecutive pieces of one cluster are joined into
   a turn exactly as a channel's segments are (``vad.turn_gap_s``, ``max_utterance_s``).
   When the two clusters are not clearly apart (``mono_min_separation``: the distance
   between the cluster centres over the spread within them) the call is one voice, or two
   that cannot be told apart: the turns are cut as before and roles stay ``unknown``.
2. **Naming, after the ASR** (:func:`assign_roles`). The rule pack says what an agent must
   say: every ``require`` rule scoped to the agent with phrases (fuzzy / keyword / regex),
   in the window it gives (the first turns or seconds: greeting, company name, purpose;
   the last turns: closing). For each speaker taken as the agent, the rules whose
   phrases that speaker says in its window are counted (toneless pinyin with the usual
   initial/final folds, a syllable of slack in four, so 可以帮您 heard as 可疑犯您 still
   counts); the call's direction adds one for the speaker expected first (inbound: the
   agent answers; outbound: the customer picks up). The speaker with more is the agent
   when it leads by ``mono_min_margin`` or more; else roles stay ``unknown``.

Where roles stay unknown the rule engine's ``uncertain`` verdicts apply. The transcript's
``asr`` fields record how roles were assigned (``roles``: ``channels`` | ``inferred`` |
``unknown``, and ``roles_detail``), so a reviewer knows a call's roles were inferred.

Known limits: two speakers in one piece (no pause of ``mono_split_ms`` between them, or
talking over each other) are one turn of the cluster closer to the piece's main voice;
very short pieces (a 嗯) carry little voice and may join the wrong side; a live mono line
(``serve``) is not split (roles unknown there).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .messages import Direction, Role, Samples, SpeechSegment, Utterance, replace

if TYPE_CHECKING:
    from collections import Counter

    from .config import PipelineConfig
    from .rules.pack import RulePack
    from .transcript import Transcript

ROLES_VERSION = "1"

# -- voice prints ---------------------------------------------------------------------

_RATE = 16000
_FRAME = 400  # 25 ms
_HOP = 160  # 10 ms
_NFFT = 512
_PITCH_FRAME = 800  # 50 ms: three periods of 60 Hz
_F0_MIN, _F0_MAX = 60.0, 400.0
_VOICED_R = 0.5  # normalised autocorrelation peak of a voiced frame
_NEAR_BEST = 0.85  # a shorter period within this of the best peak is the period
_N_MELS = 24
_N_CEPS = 12
_BAND = (250.0, 3500.0)  # inside the telephone band: 8 kHz and 16 kHz calls alike
_ACTIVE_DB = 35.0  # frames within this of the piece's loudest are speech
_BACKGROUND_DB = 20.0  # a piece this far under the main speech is background
_DIP = 0.35
_F0_WEIGHT = 2.0  # pitch counts as much as four cepstral coefficients
_MIN_FIT_S = 0.25  # pieces with less voiced speech do not move the centres
_MIN_SHARE = 0.1  # a voice holds at least this share of the voiced time
_NULL_DRAWS = 15  # a pause: below this share of the way from a segment's floor to its speech level


@functools.lru_cache(maxsize=2)
def _mel_dct(rate: int) -> tuple[np.ndarray, np.ndarray]:
    def mel(f: np.ndarray | float) -> Any:
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    lo, hi = mel(_BAND[0]), mel(_BAND[1])
    edges = 700.0 * (10 ** (np.linspace(lo, hi, _N_MELS + 2) / 2595.0) - 1.0)
    freqs = np.fft.rfftfreq(_NFFT, 1.0 / rate)
    fb = np.zeros((_N_MELS, len(freqs)))
    for m in range(_N_MELS):
        a, c, b = edges[m], edges[m + 1], edges[m + 2]
        up = (freqs - a) / (c - a)
        down = (b - freqs) / (b - c)
        fb[m] = np.clip(np.minimum(up, down), 0.0, None)
    k = np.arange(_N_MELS)
    dct = np.cos(np.pi / _N_MELS * (k[None, :] + 0.5) * np.arange(1, _N_CEPS + 1)[:, None])
    return fb, dct


@functools.lru_cache(maxsize=1)
def _hann() -> np.ndarray:
    return np.hanning(_PITCH_FRAME)


@functools.lru_cache(maxsize=1)
def _hann_ac() -> np.ndarray:
    spec = np.fft.rfft(_hann(), 2 * _PITCH_FRAME)
    ac = np.fft.irfft(np.abs(spec) ** 2)[:_PITCH_FRAME]
    return np.maximum(ac / ac[0], 1e-3)


def _frames(x: Samples, size: int, hop: int) -> np.ndarray:
    if len(x) < size:
        return np.zeros((0, size), dtype=np.float32)
    n = 1 + (len(x) - size) // hop
    return np.lib.stride_tricks.as_strided(
        x, shape=(n, size), strides=(x.strides[0] * hop, x.strides[0]), writeable=False
    )


def voice_print(x: Samples, rate: int = _RATE) -> tuple[np.ndarray, float] | None:
    """A piece's voice: ``[log2 F0 median, MFCC 1..12 means]`` over its active frames,
    and how many seconds of voiced frames that rests on; None when it has no voiced
    frames (then it is not a voice print)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    fr = _frames(x, _FRAME, _HOP)
    if len(fr) < 5:
        return None
    energy = np.mean(fr.astype(np.float64) ** 2, axis=1) + 1e-12
    db = 10 * np.log10(energy)
    active = db > max(db.max() - _ACTIVE_DB, -60.0)
    # pitch: normalised autocorrelation on 40 ms frames, same hop
    pf = _frames(x, _PITCH_FRAME, _HOP)[: len(fr)]
    pf = pf - pf.mean(axis=1, keepdims=True)
    spec = np.fft.rfft(pf * _hann(), 2 * _PITCH_FRAME)
    ac = np.fft.irfft(np.abs(spec) ** 2)[:, :_PITCH_FRAME]
    lo, hi = int(rate / _F0_MAX), int(rate / _F0_MIN)
    # divided by the window's own autocorrelation (Boersma 1993): a long period is not
    # penalised for the taper
    r = ac[:, lo:hi] / (ac[:, :1] + 1e-12) / _hann_ac()[lo:hi]
    # the shortest period whose peak is near the best one: no sub-harmonic picks
    peaks = (r[:, 1:-1] >= r[:, :-2]) & (r[:, 1:-1] >= r[:, 2:])
    best_r = r.max(axis=1)
    near = peaks & (r[:, 1:-1] >= _NEAR_BEST * best_r[:, None])
    lag = np.where(near.any(axis=1), np.argmax(near, axis=1) + 1, np.argmax(r, axis=1))
    peak = r[np.arange(len(r)), lag]
    voiced = active[: len(pf)] & (peak >= _VOICED_R)
    if voiced.sum() < 5:
        return None
    f0 = rate / (lag[voiced] + lo)
    logf0 = float(np.median(np.log2(f0)))
    # MFCC means over the voiced frames (vowels carry the voice)
    fb, dct = _mel_dct(rate)
    win = fr[: len(pf)][voiced] * np.hamming(_FRAME)
    power = np.abs(np.fft.rfft(win, _NFFT)) ** 2
    logmel = np.log(power @ fb.T + 1e-10)
    ceps = logmel @ dct.T
    return np.concatenate([[logf0], ceps.mean(axis=0)]), float(voiced.sum()) * _HOP / rate


# -- two clusters ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Clustering:
    """Which of two voices each piece is (``-1``: no voice print), how far apart the two
    voices are (``separation``: centre distance over the pooled within-cluster spread,
    in standardised units, over the same for one voice's pieces, so 1 = no more apart
    than one voice) and each piece's margin (0 = halfway between the centres)."""

    labels: tuple[int, ...]
    margins: tuple[float, ...]
    separation: float
    f0_hz: tuple[float, float]


@functools.lru_cache(maxsize=64)
def _null_separation(weights: tuple[float, ...], dims: int) -> float:
    """The median separation :func:`two_voices` finds in :data:`_NULL_DRAWS` draws of
    one voice: Gaussian prints with these weights (seeded by the count)."""
    rng = np.random.default_rng(len(weights))
    seps = [
        two_voices(list(rng.normal(size=(len(weights), dims))), weights, null=False).separation
        for _ in range(_NULL_DRAWS)
    ]
    return max(float(np.median(seps)), 1e-6)


def two_voices(
    prints: Sequence[np.ndarray | None], weights: Sequence[float], *, null: bool = True
) -> Clustering:
    """Weighted 2-means over standardised voice prints, pitch weighted :data:`_F0_WEIGHT`
    times a cepstral coefficient. Fitted on the pieces with :data:`_MIN_FIT_S` of voiced
    speech or more (shorter ones are then given the nearer centre); deterministic starts
    (lowest / highest pitch, the halves below / above the median pitch, the two prints
    farthest apart); the tightest split in which each voice holds at least
    :data:`_MIN_SHARE` of the voiced time wins."""
    n = len(prints)
    none = Clustering((-1,) * n, (0.0,) * n, 0.0, (0.0, 0.0))
    idx = [i for i, p in enumerate(prints) if p is not None]
    fit = [j for j, i in enumerate(idx) if weights[i] >= _MIN_FIT_S]
    if len(fit) < 3:
        return none
    X = np.stack([prints[i] for i in idx]).astype(np.float64)  # type: ignore[misc]
    w_all = np.asarray([weights[i] for i in idx], dtype=np.float64)
    F, w = X[fit], w_all[fit] / w_all[fit].sum()
    mu = w @ F
    sd = np.sqrt(w @ (F - mu) ** 2) + 1e-9
    scale = np.ones(X.shape[1])
    scale[0] = _F0_WEIGHT
    Z = (X - mu) / sd * scale
    Zf = Z[fit]
    f0 = Zf[:, 0]
    med = float(np.median(f0))
    starts: list[np.ndarray] = [np.stack([Zf[int(np.argmin(f0))], Zf[int(np.argmax(f0))]])]
    lowm, highm = f0 <= med, f0 > med
    if lowm.any() and highm.any():
        starts.append(np.stack([Zf[lowm].mean(0), Zf[highm].mean(0)]))
    d2 = ((Zf[:, None, :] - Zf[None, :, :]) ** 2).sum(-1)
    far = np.unravel_index(int(np.argmax(d2)), d2.shape)
    starts.append(np.stack([Zf[far[0]], Zf[far[1]]]))
    best: tuple[float, np.ndarray] | None = None
    for cent in starts:
        cent = cent.copy()
        lab = np.full(len(Zf), -1)
        for _ in range(100):
            new = np.argmin(((Zf[:, None, :] - cent[None, :, :]) ** 2).sum(-1), axis=1)
            if (new == lab).all():
                break
            lab = new
            for k in (0, 1):
                m = lab == k
                if m.any():
                    cent[k] = (w[m] @ Zf[m]) / w[m].sum()
        share = min(w[lab == 0].sum(), w[lab == 1].sum())
        if share < _MIN_SHARE:
            continue
        inertia = float((w * ((Zf - cent[lab]) ** 2).sum(-1)).sum())
        if best is None or inertia < best[0]:
            best = (inertia, cent)
    if best is None:
        return none
    inertia, cent = best
    if cent[0, 0] > cent[1, 0]:  # voice 0 = the lower pitch, whatever the start
        cent = cent[::-1].copy()
    spread = math.sqrt(inertia / Z.shape[1]) + 1e-9
    separation = float(np.sqrt(((cent[0] - cent[1]) ** 2).mean())) / spread
    if null:
        # any cloud splits in two; a split of few pieces looks wider apart than one of
        # many: compare with the same split of one voice (Gaussian prints, same weights)
        separation /= _null_separation(tuple(float(x) for x in w_all[fit]), X.shape[1])
    dist = np.sqrt(((Z[:, None, :] - cent[None, :, :]) ** 2).sum(-1))
    lab_all = np.argmin(dist, axis=1)
    own = dist[np.arange(len(Z)), lab_all]
    other = dist[np.arange(len(Z)), 1 - lab_all]
    marg = (other - own) / (other + own + 1e-9)
    labels = [-1] * n
    margins = [0.0] * n
    for j, i in enumerate(idx):
        labels[i] = int(lab_all[j])
        margins[i] = float(marg[j])
    hz = tuple(float(2 ** (c[0] / _F0_WEIGHT * sd[0] + mu[0])) for c in cent)
    return Clustering(tuple(labels), tuple(margins), separation, (hz[0], hz[1]))


# -- turns ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MonoTurns:
    """A mono call cut into turns, with each turn's voice (0/1, ``-1`` unknown)."""

    segments: tuple[SpeechSegment, ...]
    speakers: tuple[int, ...]
    clustering: Clustering
    two_voices: bool
    pieces: int
    min_margin: float = 0.0


def applies(config: PipelineConfig, nchannels: int) -> bool:
    return config.audio.mono_roles == "auto" and nchannels == 1


def speaker_turns(
    samples: Samples,
    config: PipelineConfig,
    *,
    call_id: str,
    sample_rate: int = _RATE,
    rejected: Counter[str] | None = None,
) -> MonoTurns:
    """Cut a mono channel into single-voice turns (see the module docstring, step 1)."""
    from .vad import merge_by_start, segment_channel

    vcfg = config.vad
    fine = vcfg.model_copy(update={"stop_ms": min(vcfg.stop_ms, config.audio.mono_split_ms)})
    pieces = merge_by_start(
        [
            segment_channel(
                samples,
                fine,
                call_id=call_id,
                channel=0,
                role=Role.UNKNOWN,
                sample_rate=sample_rate,
                rejected=rejected,
            )
        ]
    )
    pause = config.audio.mono_split_ms / 1000.0
    pieces = [q for p in pieces for q in split_at_pauses(p, pause)]
    levels = [speech_level(p.samples) for p in pieces]
    back = _background(levels, [p.duration for p in pieces])
    prints = [
        None if b else voice_print(p.samples, sample_rate)
        for p, b in zip(pieces, back, strict=True)
    ]
    cl = two_voices(
        [p[0] if p else None for p in prints], [max(p[1], 0.05) if p else 0.0 for p in prints]
    )
    apart = cl.separation >= config.audio.mono_min_separation
    labels = list(cl.labels) if apart else [-1] * len(pieces)
    if apart:
        _fill_unprinted(labels, pieces, back)
    turns, speakers = _join(pieces, labels, samples, config, sample_rate)
    if not apart:  # one voice, or two not told apart: cut as a channel's turns always were
        turns = channel_turns(samples, config, call_id=call_id, sample_rate=sample_rate)
        speakers = [-1] * len(turns)
    return MonoTurns(
        tuple(turns), tuple(speakers), cl, apart, len(pieces), config.audio.mono_min_margin
    )


def channel_turns(
    samples: Samples, config: PipelineConfig, *, call_id: str, sample_rate: int = _RATE
) -> list[SpeechSegment]:
    """A mono channel cut into turns as any channel's are (no speaker split)."""
    from .vad import merge_turns

    return merge_turns(
        _coarse(samples, config, call_id, sample_rate),
        (samples,),
        max_gap_s=config.vad.turn_gap_s,
        max_len_s=config.vad.max_utterance_s,
        sample_rate=sample_rate,
    )


def split_at_pauses(seg: SpeechSegment, pause_s: float) -> list[SpeechSegment]:
    """Cut a segment where its level dips for ``pause_s`` or longer: below 35 % of the way
    from its floor (10th percentile of 20 ms frame levels) to its speech level (95th). The
    VAD keeps going through steady babble or line noise; a change of speaker still leaves
    such a dip."""
    rate = seg.sample_rate
    hop = rate // 100
    fr = _frames(np.ascontiguousarray(seg.samples), 2 * hop, hop)
    if len(fr) < 10:
        return [seg]
    db = 10 * np.log10(np.mean(fr.astype(np.float64) ** 2, axis=1) + 1e-12)
    floor, top = np.percentile(db, [10, 95])
    if top - floor < 10.0:
        return [seg]
    low = db < floor + _DIP * (top - floor)
    need = max(1, int(round(pause_s * 100)))
    cuts = []
    i = 0
    while i < len(low):
        if low[i]:
            j = i
            while j < len(low) and low[j]:
                j += 1
            if j - i >= need and i > 0 and j < len(low):
                cuts.append((i + j) // 2 * hop + hop)
            i = j
        else:
            i += 1
    if not cuts:
        return [seg]
    out = []
    bounds = [0, *cuts, len(seg.samples)]
    for a, b in zip(bounds, bounds[1:], strict=False):
        if b - a < rate // 5:
            continue
        out.append(
            replace(
                seg,
                start=round(seg.start + a / rate, 3),
                end=round(seg.start + b / rate, 3),
                samples=seg.samples[a:b],
            )
        )
    return out or [seg]


def _coarse(
    samples: Samples, config: PipelineConfig, call_id: str, rate: int
) -> list[SpeechSegment]:
    from .vad import segment_channel

    return list(
        segment_channel(
            samples, config.vad, call_id=call_id, channel=0, role=Role.UNKNOWN, sample_rate=rate
        )
    )


def speech_level(x: Samples) -> float:
    """A piece's speech level: the mean dB of its louder half of 20 ms frames."""
    fr = _frames(np.ascontiguousarray(x, dtype=np.float32), 320, 160)
    if len(fr) == 0:
        return -120.0
    db = np.sort(10 * np.log10(np.mean(fr.astype(np.float64) ** 2, axis=1) + 1e-12))
    return float(db[len(db) // 2 :].mean())


def _background(levels: Sequence[float], durations: Sequence[float]) -> list[bool]:
    """Pieces far below the call's main speech (:data:`_BACKGROUND_DB` under the level
    that 10 % of the speech time reaches): babble, a television, a far voice. They are
    not one of the two voices, and their turns keep an unknown role."""
    if not levels:
        return []
    order = np.argsort(levels)[::-1]
    dur = np.asarray(durations, dtype=np.float64)[order]
    cum = np.cumsum(dur) / max(dur.sum(), 1e-9)
    ref = float(np.asarray(levels)[order][int(np.searchsorted(cum, 0.1))])
    return [lv < ref - _BACKGROUND_DB for lv in levels]


def _fill_unprinted(
    labels: list[int], pieces: Sequence[SpeechSegment], background: Sequence[bool]
) -> None:
    """A (short) piece without a voice print takes the voice of its nearer neighbour;
    background pieces stay unknown."""
    for i, lab in enumerate(labels):
        if lab >= 0 or background[i]:
            continue
        best, gap = -1, math.inf
        for j in (i - 1, i + 1):
            if 0 <= j < len(pieces) and labels[j] >= 0:
                g = abs(pieces[j].start - pieces[i].start)
                if g < gap:
                    best, gap = labels[j], g
        labels[i] = best


def _join(
    pieces: Sequence[SpeechSegment],
    labels: Sequence[int],
    samples: Samples,
    config: PipelineConfig,
    rate: int,
) -> tuple[list[SpeechSegment], list[int]]:
    """Consecutive pieces of one voice joined into a turn (gap <= turn_gap_s, length <=
    max_utterance_s), the audio between them taken from the channel."""
    out: list[SpeechSegment] = []
    who: list[int] = []
    gap, most = config.vad.turn_gap_s, config.vad.max_utterance_s
    for p, lab in zip(pieces, labels, strict=True):
        if (
            out
            and who[-1] == lab
            and p.start - out[-1].end <= gap
            and p.end - out[-1].start <= most
        ):
            prev = out[-1]
            a, b = int(round(prev.start * rate)), int(round(p.end * rate))
            out[-1] = replace(prev, end=p.end, samples=samples[a:b])
            continue
        out.append(p)
        who.append(lab)
    return out, who


# -- naming -----------------------------------------------------------------------------

_FOLD = (("zh", "z"), ("ch", "c"), ("sh", "s"))


def _fold(syl: str) -> str:
    for a, b in _FOLD:
        if syl.startswith(a):
            syl = b + syl[len(a) :]
            break
    if syl.startswith("l"):
        syl = "n" + syl[1:]
    if syl.endswith("ng"):
        syl = syl[:-1]
    return syl


@functools.lru_cache(maxsize=4096)
def syllables(text: str) -> tuple[str, ...]:
    """Toneless, folded pinyin syllables of the Chinese characters in ``text``."""
    from pypinyin import Style, lazy_pinyin

    from .text import match_form

    form = match_form(text)
    return tuple(
        _fold(s) for s in lazy_pinyin(form, style=Style.NORMAL, errors="ignore") if s.isalpha()
    )


def _slack(n: int) -> int:
    return n // 4


def says(text_syl: Sequence[str], phrase: Sequence[str]) -> bool:
    """``phrase`` occurs in ``text_syl`` with at most one syllable in four different."""
    n = len(phrase)
    if n == 0 or len(text_syl) < n:
        return False
    k = _slack(n)
    for i in range(len(text_syl) - n + 1):
        miss = 0
        for a, b in zip(text_syl[i : i + n], phrase, strict=True):
            if a != b:
                miss += 1
                if miss > k:
                    break
        else:
            return True
    return False


@dataclass(frozen=True, slots=True)
class Cue:
    """What one agent rule of the pack expects the agent to say, and where."""

    rule_id: str
    phrases: tuple[tuple[str, ...], ...]
    patterns: tuple[str, ...]
    direction: Direction | None
    first_turns: int | None
    first_seconds: float | None
    last_turns: int | None


def _texts(cond: Any, phrases: list[str], patterns: list[str]) -> None:
    if cond is None:
        return
    for op, v in cond.operators():
        if op in ("all", "any"):
            for c in v:
                _texts(c, phrases, patterns)
        elif op == "exists":
            _texts(v, phrases, patterns)
        elif op == "fuzzy":
            phrases.extend(v.phrases)
        elif op == "keyword":
            phrases.extend(v.any or ())
            phrases.extend(v.all or ())
        elif op == "regex":
            patterns.append(v.pattern)


def pack_cues(pack: RulePack) -> tuple[Cue, ...]:
    """Every enabled ``require`` rule scoped to the agent that names what to say."""
    out = []
    for rule in pack.rules:
        spec = rule.spec
        if rule.mode != "require" or not spec.enabled or spec.scope.role != "agent":
            continue
        phrases: list[str] = []
        patterns: list[str] = []
        _texts(spec.require, phrases, patterns)
        syl = tuple(dict.fromkeys(s for p in phrases if (s := syllables(p))))
        if not syl and not patterns:
            continue
        sc = spec.scope
        out.append(
            Cue(
                spec.id,
                syl,
                tuple(patterns),
                Direction(sc.direction) if sc.direction else None,
                sc.first_turns,
                sc.first_seconds,
                sc.last_turns,
            )
        )
    return tuple(out)


def _hit(cue: Cue, utts: Sequence[Utterance]) -> bool:
    from .rules.lang.linear_regex import compile_pattern  # pack regexes: RE2, linear time
    from .text import match_form

    for u in utts:
        syl = syllables(u.text)
        if any(says(syl, p) for p in cue.phrases):
            return True
        form = match_form(u.text)
        if any(compile_pattern(p).search(form) for p in cue.patterns):
            return True
    return False


def agent_evidence(
    utts: Sequence[Utterance], cues: Iterable[Cue], direction: Direction
) -> list[str]:
    """The pack rules whose phrases ``utts`` (one speaker's, in order) say in their window."""
    got = []
    for cue in cues:
        if cue.direction is not None and cue.direction != direction:
            continue
        window = list(utts)
        if cue.first_turns is not None:
            window = window[: cue.first_turns]
        if cue.first_seconds is not None:
            window = [u for u in window if u.start < cue.first_seconds]
        if cue.last_turns is not None:
            window = window[-cue.last_turns :]
        if window and _hit(cue, window):
            got.append(cue.rule_id)
    return got


@dataclass(frozen=True, slots=True)
class Naming:
    agent: int | None  # the voice named agent; None: roles stay unknown
    scores: tuple[float, float]
    evidence: tuple[tuple[str, ...], tuple[str, ...]]
    first: int | None


def name_voices(
    utts: Sequence[Utterance],
    speakers: Sequence[int],
    cues: Sequence[Cue],
    direction: Direction,
    min_margin: float,
) -> Naming:
    """Which voice is the agent (see the module docstring, step 2)."""
    by = {k: [u for u, s in zip(utts, speakers, strict=True) if s == k] for k in (0, 1)}
    ev = tuple(tuple(agent_evidence(by[k], cues, direction)) for k in (0, 1))
    scores = [float(len(ev[0])), float(len(ev[1]))]
    first = next((s for s in speakers if s >= 0), None)
    if first is not None:
        opener = first if direction == Direction.INBOUND else 1 - first
        scores[opener] += 1.0
    lead = 0 if scores[0] >= scores[1] else 1
    ok = bool(by[0]) and bool(by[1]) and scores[lead] - scores[1 - lead] >= min_margin
    return Naming(lead if ok else None, (scores[0], scores[1]), (ev[0], ev[1]), first)


def name_transcript(transcript: Transcript, turns: MonoTurns, pack: RulePack) -> Transcript:
    """A mono call's transcript with its utterances' roles named (step 2), and the
    provenance fields ``roles`` (``inferred`` | ``unknown``) and ``roles_detail`` added
    to its ``asr`` fields."""
    from dataclasses import replace as dc_replace

    from .audio import AudioConfig

    margin = turns.min_margin if turns.min_margin else AudioConfig().mono_min_margin
    utts, fields = assign_roles(
        transcript.utterances, turns, pack, transcript.call.direction, margin
    )
    asr = dict(transcript.asr) | fields
    return dc_replace(transcript, utterances=tuple(utts), asr=tuple(sorted(asr.items())))


def assign_roles(
    utterances: Sequence[Utterance],
    turns: MonoTurns,
    pack: RulePack,
    direction: Direction,
    min_margin: float,
) -> tuple[list[Utterance], dict[str, Any]]:
    """Name the two voices of a mono call and give its utterances their roles; with the
    provenance fields for the transcript's ``asr`` (``roles``, ``roles_detail``)."""
    voice = {(s.start, s.end): k for s, k in zip(turns.segments, turns.speakers, strict=True)}
    speakers = [voice.get((u.start, u.end), -1) for u in utterances]
    cl = turns.clustering
    detail = (
        f"mono v{ROLES_VERSION}: {turns.pieces} pieces, voice separation {cl.separation:.2f}"
        f" (F0 {cl.f0_hz[0]:.0f}/{cl.f0_hz[1]:.0f} Hz)"
    )
    if not turns.two_voices:
        return list(utterances), {
            "roles": "unknown",
            "roles_detail": f"{detail}: not two distinct voices",
        }
    naming = name_voices(utterances, speakers, pack_cues(pack), direction, min_margin)
    detail += (
        f"; agent evidence {naming.scores[0]:.0f} vs {naming.scores[1]:.0f}"
        f" ({', '.join(naming.evidence[0]) or '-'} | {', '.join(naming.evidence[1]) or '-'};"
        f" {direction.value}, first voice {naming.first})"
    )
    if naming.agent is None:
        return list(utterances), {"roles": "unknown", "roles_detail": f"{detail}: margin too small"}
    role = {naming.agent: Role.AGENT, 1 - naming.agent: Role.CUSTOMER}
    out = [
        replace(u, role=role[s]) if s in role else u
        for u, s in zip(utterances, speakers, strict=True)
    ]
    return out, {"roles": "inferred", "roles_detail": f"{detail}: agent = voice {naming.agent}"}
