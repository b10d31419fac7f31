"""Emotion scorer: customer anger and agent impatience from words, raised by prosody.

The substance of the ``emotion`` rule operator, kept free of the rule engine so it can be
measured on its own (``benchmarks/bench_emotion.py``) and wrapped by an operator module.

How one turn is scored (:meth:`EmotionLexicon.score`):

1. **Text.** NFKC, simplified (``text.to_simplified``), lower case; punctuation is kept here
   (unlike the rules' match form) because it marks clauses and quotes. Quoted speech
   (“…”, "…", 「…」, 『…』) is dropped: 他说“太烦了” is not the speaker's feeling. A clause
   that reports someone else's words without quotes (他说…, 有人骂…) is dropped too.
2. **Cues.** Each clause is scanned for the lexicon's phrases (``data/emotion/lexicon.tsv``,
   Apache-2.0, written for this project), the longest phrase at a position winning (so the
   neutral 麻烦 hides 烦). A customer turn reads the ``anger`` cues, an agent turn the
   ``impatience`` cues, a turn of unknown role both (the stronger label wins).
3. **Negation.** A negator (不 没 没有 别 不是 并不 不要 …, ``modifiers.tsv``) right before the
   cue — allowing 是/在/想/会/有/再/觉得 and degree words between — cancels it: 我不生气,
   没有不耐烦, 我不是在发火, 请您不要生气. A rhetorical 不是…吗 (你们这不是坑人吗) is not a
   negation.
4. **Whose feeling.** A *state* cue (生气, 不满意) whose nearest pronoun before it is
   someone else's (我理解您很生气, 您是不是不满意) is not the speaker's; *expr* cues
   (有完没完, 什么破) count whoever they address.
5. **Degree.** An intensifier right before the cue (非常 太 真 简直 …) multiplies its weight,
   a downtoner (有点 稍微) lowers it, a suffix (死了 透了) or a clause ending in ！ raises it.
   The turn's lexical strength is the noisy-or of its cues: ``1 - prod(1 - w_i)``.
6. **Prosody.** ``level_jump_db`` is the turn's RMS level (``Utterance.level_dbfs``) minus the
   speaker's running median level; ``pace_jump`` is the turn's characters per second over
   the speaker's median (1.0 = usual pace). :class:`SpeakerBaseline` computes both from a
   call's turns. They only *raise* a strength the words gave: with no lexical cue the
   label is ``None`` and the strength 0, however loud or fast the turn. A level jump of
   +3..+9 dB adds up to half of the remaining headroom, a pace 1.15..1.6x up to 0.3 of it:
   ``s' = s + (1 - s) * (1 - (1 - b_level) * (1 - b_pace))``.

Measured on ``benchmarks/data/emotion_utterances.jsonl`` (see ``bench_emotion.py``).
"""

from __future__ import annotations

import functools
import math
import re
import statistics
import unicodedata
from collections import deque
from dataclasses import dataclass
from importlib import resources
from typing import Final, Literal

from ..text import to_simplified

Label = Literal["anger", "impatience"]
_CATEGORIES: Final = ("anger", "impatience", "neutral")
_KINDS: Final = ("state", "expr", "pattern")

_QUOTES_RE: Final = re.compile(r"“[^”]*”|\"[^\"]*\"|「[^」]*」|『[^』]*』|‘[^’]*’")
_CLAUSE_RE: Final = re.compile(r"[^,.!?;:，。！？；：、…~\s]+([!?！？]?)")
# someone else's words reported without quotes: 他说…, 有人骂…, 客户经常抱怨…
_REPORTED_RE: Final = re.compile(
    r"(他|她|他们|她们|别人|有人|人家|朋友|老公|老婆|家人|客户|顾客)[^，。]{0,4}?(说|讲|骂|抱怨|吐槽)"
)
_SELF: Final = ("我们", "咱们", "我", "咱", "让人", "令人", "叫人")  # 让人失望: the speaker
_OTHER: Final = ("你们", "您们", "他们", "她们", "你", "您", "他", "她", "人家", "别人")
_PRONOUN_RE: Final = re.compile("|".join(sorted(_SELF + _OTHER, key=len, reverse=True)))
# between a negator and its cue: 不[是在想]生气, 没有[很]生气, 并不[觉得]不满意
_BRIDGE: Final = "是|在|想|会|有|再|觉得|感到|算|那么|这么|怎么|太|很|特别|有点|一点|什么|啥"
# a pronoun after these is the cause or the target, not who feels: 被你们逼疯, 对你们很失望
_CAUSE: Final = ("被", "对")
_QUESTION_END: Final = ("吗", "嘛", "么")


@dataclass(frozen=True, slots=True)
class Cue:
    """One lexicon phrase: its category (``anger`` / ``impatience`` / ``neutral``), kind
    (``state`` names a feeling, ``expr`` expresses one) and weight in [0, 1]."""

    phrase: str
    category: str
    kind: str
    weight: float


@dataclass(frozen=True, slots=True)
class EmotionScore:
    """What a turn shows. ``label`` is ``None`` when no cue survived (``strength == 0``);
    ``cues`` are the phrases that counted, then ``level+Ndb`` / ``pace xN`` when prosody
    raised the strength."""

    label: Label | None
    strength: float
    cues: tuple[str, ...] = ()


NO_EMOTION: Final = EmotionScore(None, 0.0, ())


def _fold(text: str, simplified: bool = False) -> str:
    if simplified:  # already text.normalise()d (Utterance.text): NFKC'd and simplified
        return text.lower().replace(" ", "")
    text = unicodedata.normalize("NFKC", text)
    return to_simplified(text).lower().replace(" ", "")


def _read_tsv(name: str, ncols: int) -> list[list[str]]:
    raw = resources.files("qa_pipeline.rules").joinpath("data", "emotion", name)
    rows = []
    for n, line in enumerate(raw.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) != ncols:
            raise ValueError(f"{name}:{n}: wrong number of tab-separated columns: {line!r}")
        rows.append(cols)
    return rows


class EmotionLexicon:
    """The cue phrases and modifiers, compiled for scanning. Build with :meth:`load`."""

    def __init__(self, cues: list[Cue], modifiers: list[tuple[str, float, str]]) -> None:
        self.cues: dict[str, list[Cue]] = {}
        self.patterns: list[tuple[re.Pattern[str], Cue]] = []
        for c in cues:
            if c.category not in _CATEGORIES or c.kind not in _KINDS:
                raise ValueError(f"bad cue {c}")
            if not 0.0 <= c.weight <= 1.0:
                raise ValueError(f"cue {c.phrase!r}: weight {c.weight} outside [0, 1]")
            if c.kind == "pattern":
                self.patterns.append((re.compile(c.phrase), c))
            else:
                self.cues.setdefault(_fold(c.phrase), []).append(c)
        by_len = sorted(self.cues, key=len, reverse=True)
        self._cue_re = re.compile("|".join(map(re.escape, by_len)))
        negators = [_fold(w) for t, _, w in modifiers if t == "negator"]
        self._intens = {_fold(w): f for t, f, w in modifiers if t in ("intensifier", "downtoner")}
        self._suffix = {_fold(w): f for t, f, w in modifiers if t == "suffix"}
        neg = "|".join(map(re.escape, sorted(negators, key=len, reverse=True)))
        bridge = "|".join(sorted({*_BRIDGE.split("|"), *map(re.escape, self._intens)}, key=len))
        self._neg_re = re.compile(f"(?:{neg})(?:{bridge})*$")
        self._rhetorical_neg = re.compile(f"不是(?:{bridge})*$")
        words = sorted(self._intens, key=len, reverse=True)
        self._degree_re = re.compile(f"({'|'.join(map(re.escape, words))})(?:了|得)?$")

    @staticmethod
    def load() -> EmotionLexicon:
        """The packaged lexicon (``qa_pipeline/rules/data/emotion/``), loaded once."""
        return _packaged()

    def score(
        self,
        text: str,
        *,
        role: str,
        level_jump_db: float | None = None,
        pace_jump: float | None = None,
        simplified: bool = False,
    ) -> EmotionScore:
        """Score one turn. ``role``: ``"customer"`` reads anger cues, ``"agent"``
        impatience cues, anything else both. ``level_jump_db`` / ``pace_jump``: see the
        module doc (``None`` when unknown); they never fire a label on their own.
        ``simplified=True`` says the text is already ``text.normalise``d, as
        ``Utterance.text`` is, and skips the NFKC and OpenCC pass (half the cost)."""
        if role == "customer":
            wanted: tuple[str, ...] = ("anger",)
        elif role == "agent":
            wanted = ("impatience",)
        else:
            wanted = ("anger", "impatience")
        found = self.lexical(text, simplified=simplified)
        best = NO_EMOTION
        for cat in wanted:
            hits = found.get(cat)
            if not hits:
                continue
            rest = 1.0
            for _, w in hits:
                rest *= 1.0 - w
            s = 1.0 - rest
            if s > best.strength:
                label: Label = "anger" if cat == "anger" else "impatience"
                best = EmotionScore(label, s, tuple(p for p, _ in hits))
        if best.label is None:
            return NO_EMOTION
        return _with_prosody(best, level_jump_db, pace_jump)

    def lexical(self, text: str, simplified: bool = False) -> dict[str, list[tuple[str, float]]]:
        """The surviving cues of a text by category: ``(phrase, weight after modifiers)``."""
        text = _QUOTES_RE.sub("，", _fold(text, simplified))
        out: dict[str, list[tuple[str, float]]] = {}
        # most turns hold no cue: one scan of the whole text decides, clauses only then
        patterns = [(rx, c) for rx, c in self.patterns if rx.search(text) is not None]
        if not patterns and self._cue_re.search(text) is None:
            return out
        for m in _CLAUSE_RE.finditer(text):
            clause, mark = m.group()[: len(m.group()) - len(m.group(1))], m.group(1)
            rep = _REPORTED_RE.search(clause)
            if rep is not None:
                clause = clause[: rep.start()]
            question = mark in ("?", "？") or clause.endswith(_QUESTION_END)
            exclaim = mark in ("!", "！")
            hits = [
                (h.start(), h.end(), c)
                for h in self._cue_re.finditer(clause)
                for c in self.cues[h.group()]
            ]
            for rx, c in patterns:
                hits.extend((h.start(), h.end(), c) for h in rx.finditer(clause))
            for start, end, cue in hits:
                if cue.weight == 0.0:
                    continue
                w = self._weigh(cue, clause[:start], clause[end:], question, exclaim)
                if w > 0.0:
                    shown = clause[start:end] if cue.kind == "pattern" else cue.phrase
                    out.setdefault(cue.category, []).append((shown, w))
        return out

    def _weigh(self, cue: Cue, before: str, after: str, question: bool, exclaim: bool) -> float:
        near = before[-6:]
        if self._neg_re.search(near) and not (
            question and self._rhetorical_neg.search(near) is not None
        ):
            return 0.0
        if cue.kind == "state":
            # the nearest pronoun, skipping a cause or target (被你们逼疯, 对你们不满)
            owners = [
                m.group()
                for m in _PRONOUN_RE.finditer(before)
                if before[m.start() - 1 : m.start()] not in _CAUSE
            ]
            if owners and owners[-1] in _OTHER:
                return 0.0
        w = cue.weight
        d = self._degree_re.search(near)
        if d is not None:
            w *= self._intens[d.group(1)]
        for suf, f in self._suffix.items():
            if after.startswith(suf):
                w *= f
                break
        if exclaim:
            w *= 1.15
        return min(w, 0.98)


@functools.cache
def _packaged() -> EmotionLexicon:
    rows = _read_tsv("lexicon.tsv", 4)
    cues = [Cue(phrase, cat, kind, float(w)) for cat, kind, w, phrase in rows]
    mods = [(t, float(f), w) for t, f, w in _read_tsv("modifiers.tsv", 3)]
    return EmotionLexicon(cues, mods)


def _ramp(x: float, lo: float, hi: float, top: float) -> float:
    if not math.isfinite(x) or x <= lo:
        return 0.0
    return top * min(1.0, (x - lo) / (hi - lo))


def prosody_boost(level_jump_db: float | None, pace_jump: float | None) -> float:
    """The share of the remaining headroom a turn's level and pace jump add, in [0, 0.65]."""
    b_level = 0.0 if level_jump_db is None else _ramp(level_jump_db, 3.0, 9.0, 0.5)
    b_pace = 0.0 if pace_jump is None else _ramp(pace_jump, 1.15, 1.6, 0.3)
    return 1.0 - (1.0 - b_level) * (1.0 - b_pace)


def _with_prosody(
    s: EmotionScore, level_jump_db: float | None, pace_jump: float | None
) -> EmotionScore:
    b = prosody_boost(level_jump_db, pace_jump)
    if b <= 0.0:
        return s
    extra: list[str] = []
    if level_jump_db is not None and level_jump_db > 3.0:
        extra.append(f"level+{level_jump_db:.0f}db")
    if pace_jump is not None and pace_jump > 1.15:
        extra.append(f"pace x{pace_jump:.2f}")
    return EmotionScore(s.label, s.strength + (1.0 - s.strength) * b, s.cues + tuple(extra))


class SpeakerBaseline:
    """One speaker's running medians of level (dBFS) and pace (characters a second) over
    their last ``window`` turns, for the jumps :meth:`EmotionLexicon.score` takes.

    :meth:`observe` returns a turn's jumps against the turns *before* it (``None`` until
    ``min_turns`` turns with that measure were seen), then adds the turn. Pace counts the
    text's letters and characters (no punctuation) over the turn's duration; turns under
    ``min_duration`` s or without text give no pace."""

    def __init__(self, window: int = 20, min_turns: int = 3, min_duration: float = 0.4) -> None:
        self.min_turns = min_turns
        self.min_duration = min_duration
        self._levels: deque[float] = deque(maxlen=window)
        self._paces: deque[float] = deque(maxlen=window)

    def observe(
        self, text: str, duration: float, level_dbfs: float | None
    ) -> tuple[float | None, float | None]:
        level_jump: float | None = None
        pace_jump: float | None = None
        if level_dbfs is not None and math.isfinite(level_dbfs):
            if len(self._levels) >= self.min_turns:
                level_jump = level_dbfs - statistics.median(self._levels)
            self._levels.append(level_dbfs)
        n = sum(1 for ch in text if ch.isalnum())
        if n and duration >= self.min_duration:
            pace = n / duration
            if len(self._paces) >= self.min_turns:
                pace_jump = pace / statistics.median(self._paces)
            self._paces.append(pace)
        return level_jump, pace_jump
