"""Guards against Whisper's known failure modes on silence, noise and synthetic speech.

* **Hallucinated credits**: on silence or music Whisper writes subtitle credits and
  video-platform boilerplate it saw in training (字幕由Amara.org社群提供, 请不吝点赞订阅
  转发打赏, ...). Those phrases are removed; an utterance left empty is dropped.
* **Repetition loops**: "好,好,好,好..." or a sentence written twice. A unit repeated more
  than ``max_repeats`` times in a row is collapsed to one occurrence.
* **No speech**: a segment whose no-speech probability is high *and* whose tokens are
  unlikely is dropped (the rule Whisper itself uses, applied per utterance).
* **Prompt echo**: Whisper sometimes copies its prompt instead of reading the audio. A
  decode that is nothing but the terms the decoder was told (hotwords, the company name)
  is marked ``prompt_echo`` (no text) for the engine to decode again without the prompt
  (:meth:`~qa_pipeline.asr.engine.AsrEngine.recover`). Measured on a corpus call: 星辰，
  星辰，星辰 for a burst of noise in the agent's channel (it opened a talk-over) and 星辰
  ×13 for the agent's farewell.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

BUILTIN_HALLUCINATIONS: tuple[str, ...] = (
    "字幕由Amara.org社群提供",
    "由Amara.org社区提供的字幕",
    "请不吝点赞订阅转发打赏支持明镜与点点栏目",
    "请不吝点赞订阅转发打赏",
    "明镜与点点栏目",
    "点赞订阅转发打赏",
    "优优独播剧场YoYoTelevisionSeriesExclusive",
    "YoYoTelevisionSeriesExclusive",
    "中文字幕志愿者",
    "中文字幕制作",
    "中文字幕",
    "字幕制作人",
    "字幕志愿者",
    "字幕提供",
    "谢谢观看",
    "感谢观看",
    "请订阅我的频道",
    "欢迎订阅",
    "本字幕由",
    "小编字幕",
    "MING PAO CANADA",
    "Thank you for watching",
    "Thanks for watching",
    "Subtitles by the Amara.org community",
)

_PUNCT = re.compile(r"[\s\W_]+")
PROMPT_ECHO = "prompt_echo"  # a decode that only copied the prompt (see the module doc)


def fold(text: str) -> str:
    """The guard's own key for finding a phrase: half-width (NFKC), lower case, without
    punctuation or spaces. No script conversion: the decode is still as Whisper wrote it
    (the text step, :mod:`qa_pipeline.text`, simplifies it later), and a phrase is cut from
    the decode as written, so a key that simplified the decode could only find phrases it
    cannot cut."""
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    return _PUNCT.sub("", text.lower())


@dataclass(frozen=True, slots=True)
class GuardResult:
    text: str
    dropped_reason: str | None = None
    collapsed_loop: bool = False


class HallucinationGuard:
    def __init__(
        self,
        extra_phrases: Iterable[str] = (),
        *,
        max_repeats: int = 4,
        no_speech_threshold: float = 0.6,
        log_prob_threshold: float = -1.2,
        prompt_terms: Iterable[str] = (),
    ) -> None:
        told = sorted({fold(t) for t in prompt_terms if fold(t)}, key=len, reverse=True)
        # a decode made only of told terms, each any number of times
        self._echo = re.compile(f"(?:{'|'.join(map(re.escape, told))})+") if told else None
        phrases = {fold(p) for p in (*BUILTIN_HALLUCINATIONS, *extra_phrases)}
        self._phrases = sorted((p for p in phrases if p), key=len, reverse=True)
        self.max_repeats = max_repeats
        self.no_speech_threshold = no_speech_threshold
        self.log_prob_threshold = log_prob_threshold
        # a unit of 1-12 characters repeated more than max_repeats times in a row
        self._loop = re.compile(rf"(.{{1,12}}?)(?:[\s,，、。.!！?？]*\1){{{max_repeats},}}", re.S)

    def check(self, text: str, *, no_speech_prob: float, avg_logprob: float) -> GuardResult:
        if no_speech_prob > self.no_speech_threshold and avg_logprob < self.log_prob_threshold:
            return GuardResult("", "no_speech")
        cleaned = self._remove_phrases(text)
        if not _PUNCT.sub("", cleaned):
            return GuardResult("", "hallucination" if text.strip() else "empty")
        if self._echo is not None and self._echo.fullmatch(fold(cleaned)):
            return GuardResult("", PROMPT_ECHO)  # the prompt copied: decode without it
        collapsed = self._loop.sub(r"\1", cleaned)
        collapsed = collapse_repeated_sentence(collapsed)
        return GuardResult(collapsed.strip(), None, collapsed != cleaned)

    def _remove_phrases(self, text: str) -> str:
        # Find on the fold, but cut from the text as written.
        keyed = fold(text)
        if not any(p in keyed for p in self._phrases):
            return text
        out = text
        for p in self._phrases:
            out = _remove_loose(out, p)
        return out


def _remove_loose(text: str, phrase: str) -> str:
    """Remove ``phrase`` from ``text`` ignoring punctuation/spaces/case between characters."""
    pattern = r"[\s\W_]*".join(re.escape(ch) for ch in phrase)
    return re.sub(pattern, "", text, flags=re.I)


def collapse_repeated_sentence(text: str) -> str:
    """'ABCABC' or 'ABCAB' (an utterance written again, maybe cut off) -> 'ABC'."""
    core = text.strip()
    n = len(core)
    for size in range(4, n - 3):
        if n - size < max(4, size // 5):
            break
        unit = core[:size]
        if (unit * (n // size + 1))[:n] == core:
            return unit
    return text
