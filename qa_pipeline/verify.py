"""Targeted verification decode: was a required phrase said, though Whisper misheard it?

When a ``require`` rule on utterances is not met (failed or uncertain), the utterances in
its scope (the agent's first turns for a greeting, the last ones for a closing, ...; the
rule engine lists them, :func:`~qa_pipeline.rules.runtime.engine.score_unmet`) are decoded once
more with the rule's own phrases as the decoder's hotwords. A phrase the hinted decode
holds (by the pack's own matcher, the rule's thresholds) and the unbiased decode does not
is accepted as heard only when the audio supports the hinted reading about as well as the
unbiased one: both texts are scored teacher-forced on the same encoded audio with the
same prompt the transcript was decoded with (CTranslate2's ``Whisper.align``, which gives
each text token's probability), and the hinted text's total log-probability may fall
short of the unbiased text's by at most ``asr.verify_margin`` nats. A hint makes Whisper
*write* the phrase whatever the audio holds; the unprompted score says whether the audio
bears it out. The bar is the best reading of the audio: where the transcript was decoded
with a beam narrower than :data:`REFERENCE_BEAM` (the live default, beam 1), an unbiased
decode with that beam competes too, so a hinted text is not let in for beating a hasty
reading (live, 您好 was accepted for 早上好 that way).

Accepted phrases go to :attr:`Utterance.verified <qa_pipeline.messages.Utterance>`; the
transcript text stays the unbiased decode (CER unchanged), and only ``require`` rules read
them (a banned phrase can never appear this way: ``forbid`` rules see the text alone, and
the hints are the required phrases only). The phrase lists are versioned
(:func:`verify_version`) in the transcript's provenance, as the decoder bias is.

It reads the rule pack (which rules are unmet, their phrases) and drives the ASR engine, so
it sits above both stages, beside the recorded pipeline that runs it.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import re
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .asr.engine import FITTED_PAD_S
from .asr.fitted import window_features
from .asr.result import MAX_TARGET_TOKENS, clean_raw
from .privacy import default_redactor
from .text import normalise

if TYPE_CHECKING:
    from .asr.engine import AsrEngine
    from .messages import SpeechSegment, Utterance
    from .rules.pack import RulePack
    from .transcript import Transcript

log = logging.getLogger("qa_pipeline.asr.verify")

SEPARATOR = "，"
MAX_HINT_CHARS = 120  # a rule's phrases as hotwords (faster-whisper caps the prompt part)
MAX_UTTERANCES = 3  # per rule: the scope's least confident utterances (a whole-call scope)
VERIFY_BEAM = 1  # the hint already makes its phrase likely; the score decides
#: a transcript decoded with a narrower beam than this (the live default, beam 1) is given
#: a reference reading decoded so, unbiased, to compete for the best score: a hinted text
#: must come close to the best reading of the audio, not to a hasty one
REFERENCE_BEAM = 5
COVERAGE = 0.75  # a hinted reading has at least this share of the heard text's characters
MIN_PHRASE_CHARS = 2  # one character (请) is too little audio to verify
_CJK_RUN = re.compile(r"[\u4e00-\u9fff]{2,}")


@dataclass(frozen=True, slots=True)
class RuleHint:
    """A required rule's phrases: the hotwords of its verification decode, and the pack
    atoms that decide whether a decode holds them (label: the phrase to record; None for
    a regex, whose matched text is recorded)."""

    rule_id: str
    hint: str
    atoms: tuple[tuple[int, str | None, bool], ...]  # (atom, label, counted keyword)


def _walk(cond: Any) -> Iterator[tuple[str, Any]]:
    """The phrase operators a condition requires (not those under ``not``)."""
    if cond is None:
        return
    for op, v in cond.operators():
        if op in ("all", "any"):
            for c in v:
                yield from _walk(c)
        elif op == "exists":
            yield from _walk(v)
        elif op == "count":
            yield from _walk(v.of)
        elif op in ("fuzzy", "keyword", "regex"):
            yield op, v


def rule_hint(pack: RulePack, rule_id: str) -> RuleHint | None:
    """The hint and atoms of a ``require`` rule's phrases (None: it has none)."""
    rule = pack.rule(rule_id)
    if rule.mode != "require":
        return None
    ix = pack.index
    phrases: list[str] = []
    atoms: list[tuple[int, str | None, bool]] = []
    for op, v in _walk(rule.spec.require):
        if op == "fuzzy":
            for p in v.phrases:
                phrases.append(p)
                atoms.append((ix.fuzzy(p, v.threshold), p, False))
        elif op == "keyword":
            for p in [*(v.any or ()), *(v.all or ()), *(v.of or ())]:
                phrases.append(p)
                atoms.append((ix.keyword(p), p, True))
        elif op == "regex":
            phrases.extend(_CJK_RUN.findall(v.pattern))
            atoms.append((ix.regex(v.pattern, v.exclude), None, False))
    if not atoms:
        return None
    out: list[str] = []
    size = 0
    for p in dict.fromkeys(p.strip() for p in phrases):
        if p and size + len(p) <= MAX_HINT_CHARS:
            out.append(p)
            size += len(p) + 1
    return RuleHint(rule_id, SEPARATOR.join(out), tuple(atoms))


def verify_version(pack: RulePack, margin: float) -> str:
    """A short hash of every required rule's hint and the margin (transcript provenance:
    ``rescore`` tells transcripts verified with other phrase lists)."""
    parts = [f"margin={margin:g}"]
    for r in pack.rules:
        h = rule_hint(pack, r.id) if r.spec.enabled else None
        if h is not None:
            parts.append(f"{h.rule_id}:{h.hint}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def new_phrases(pack: RulePack, hint: RuleHint, heard: str, hinted: str) -> list[str]:
    """The rule's phrases the hinted text holds more often than the heard text (by the
    pack's own matcher): a fuzzy phrase once, an exact keyword once per extra occurrence
    (``count`` rules), a regex as the text it matched."""
    ix = pack.index
    a0 = ix.analyse(heard)
    a1 = ix.analyse(hinted)
    out: list[str] = []
    for atom, label, counted in hint.atoms:
        h1 = ix.hits(a1, atom)
        if not h1:
            continue
        extra = len(h1) - len(ix.hits(a0, atom))
        if extra <= 0:
            continue
        text = a1.mf[h1[0][0] : h1[0][1]] if label is None else label
        if len(text) >= MIN_PHRASE_CHARS:
            out.extend([text] * (extra if counted else 1))
    return out


@dataclass(frozen=True, slots=True)
class Check:
    """One verification decode of one utterance for one rule (kept for inspection)."""

    rule_id: str
    index: int
    heard: str
    hinted: str
    phrases: tuple[str, ...]  # the rule's phrases the hinted text adds
    score_heard: float  # teacher-forced total log-prob of each text on the audio
    score_hinted: float
    accepted: bool
    seconds: float


@dataclass(frozen=True, slots=True)
class Decoded:
    """The decodes of one utterance for its hints, before the pack judges them."""

    index: int
    heard: str
    hinted: tuple[str, ...]  # per hint, normalised ("" when nothing was written)
    score_heard: float
    scores: tuple[float, ...]  # per hint
    covers: tuple[bool, ...]  # per hint: accounts for the audio as fully as the heard text
    best: float  # the best score of a reading that covers the audio (or the heard one)
    share: float  # seconds per hint


_NOT_WORDS = re.compile(r"[\W_]+")


def _chars(text: str) -> int:
    return len(_NOT_WORDS.sub("", text))


_ASCII_PUNCT = str.maketrans({"，": ",", "。": ".", "？": "?", "！": "!", "：": ":", "；": ";"})
_SPACE_PUNCT = re.compile(r"\s*[，。？！：；,.?!:;、]+\s*")


@functools.lru_cache(maxsize=1)
def _s2t() -> Any:
    import opencc

    return opencc.OpenCC("s2t")


def renderings(text: str) -> list[str]:
    """Ways Whisper may write the same words: as given, in traditional characters, with
    ASCII punctuation, with spaces for punctuation (distinct, in this order)."""
    trad = str(_s2t().convert(text))
    out = [text, trad, trad.translate(_ASCII_PUNCT), _SPACE_PUNCT.sub(" ", trad).strip()]
    return [t for t in dict.fromkeys(out) if t]


class Verifier:
    """Runs verification decodes on one loaded :class:`AsrEngine`'s model."""

    def __init__(self, engine: AsrEngine, margin: float, heard_beam: int | None = None) -> None:
        """``heard_beam``: the beam the transcript was decoded with, when not the engine's
        (the live decoder's); below :data:`REFERENCE_BEAM` a reference reading is decoded."""
        wm = engine.model
        self.engine = engine
        self.margin = margin
        self.heard_beam = engine.config.beam_size if heard_beam is None else heard_beam
        self._ct2 = wm.model
        self._fe = wm.feature_extractor
        from faster_whisper.tokenizer import Tokenizer

        lang = engine.config.language or "zh"
        self._tok = Tokenizer(wm.hf_tokenizer, bool(wm.model.is_multilingual), "transcribe", lang)

    def _prompt(self, hotwords: str | None) -> list[int]:
        tok = self._tok
        prompt: list[int] = []
        if hotwords:
            prompt.append(tok.sot_prev)
            prompt.extend(tok.encode(" " + hotwords.strip())[:223])
        prompt.extend(tok.sot_sequence)
        prompt.append(tok.no_timestamps)
        return prompt

    def _window(self, seconds: float) -> int:
        c = self.engine.config
        if c.window != "fitted":
            return 30
        from .asr.fitted import fitted_window

        return fitted_window(seconds, c.min_window_seconds, FITTED_PAD_S)

    def check(
        self, seg: SpeechSegment, utt: Utterance, hints: Sequence[RuleHint], pack: RulePack
    ) -> list[Check]:
        """Decode ``seg`` once per rule hint (one batch on one encoder pass) and score the
        hinted and the heard texts teacher-forced on the same audio."""
        return self.judge(self.decode(seg, utt, hints), hints, pack)

    def decode(self, seg: SpeechSegment, utt: Utterance, hints: Sequence[RuleHint]) -> Decoded:
        """The ASR part of :meth:`check` (reads the model, not the rule pack: the live
        service runs it on an ASR slot, :meth:`judge` on its rule thread)."""
        import ctranslate2

        t0 = time.perf_counter()
        audio = seg.samples.astype(np.float32, copy=False)
        seconds = len(audio) / seg.sample_rate
        window = self._window(seconds)
        feats = np.ascontiguousarray(window_features(self._fe, audio, window)[None])
        enc = self._ct2.encode(ctranslate2.StorageView.from_array(feats), to_cpu=True)
        enc_np = np.array(enc)
        k = len(hints)
        prompts = [self._prompt(h.hint) for h in hints]
        tok = self._tok
        heard_ids = tok.encode(utt.raw_text or utt.text)
        # a hint's phrase in place of a misheard one: about as long as the heard text (a
        # hint also draws Whisper into repeating it; the guard collapses what is left)
        cap = min(
            MAX_TARGET_TOKENS,
            int(self.engine.config.max_tokens_per_second * math.ceil(seconds)) + 8,
            len(heard_ids) + len(heard_ids) // 2 + 12,
        )
        one = ctranslate2.StorageView.from_array(enc_np)
        start = self._prompt(self.engine._hotwords)
        reference_raw: list[str] = []
        if self.heard_beam < REFERENCE_BEAM:
            ref = self._ct2.generate(
                one,
                [start],
                beam_size=REFERENCE_BEAM,
                max_length=len(start) + cap,
                suppress_blank=True,
                suppress_tokens=[-1],
            )[0]
            reference_raw.append(
                self.engine.guard.check(
                    clean_raw(tok.decode([t for t in ref.sequences_ids[0] if t < tok.eot])),
                    no_speech_prob=0.0,
                    avg_logprob=0.0,
                ).text.strip()
            )
        res = [  # one at a time: a batch's prompts must have the same length
            self._ct2.generate(
                one,
                [prompt],
                beam_size=VERIFY_BEAM,
                max_length=len(prompt) + cap,
                suppress_blank=True,
                suppress_tokens=[-1],
            )[0]
            for prompt in prompts
        ]
        guard = self.engine.guard
        hinted_raw = [
            guard.check(
                clean_raw(tok.decode([t for t in r.sequences_ids[0] if t < tok.eot]).strip()),
                no_speech_prob=0.0,
                avg_logprob=0.0,
            ).text
            for r in res
        ]
        # each text scored in its best rendering (script, punctuation): the words are on
        # trial, not how they are written (a hint in simplified characters draws the decode
        # into them; Whisper base scores traditional ones higher)
        texts = [utt.raw_text or utt.text, *hinted_raw, *reference_raw]
        # a reading the guard emptied (a copied prompt, a credit line) is scored as the empty
        # text; it covers nothing, so it never competes
        variants = [renderings(t) or [""] for t in texts]
        ids = [tok.encode(v) or [tok.eot] for vs in variants for v in vs]
        frames = min(int(round(seconds * 100)), window * 100)
        aligned = self._ct2.align(
            ctranslate2.StorageView.from_array(np.repeat(enc_np, len(ids), axis=0)),
            start,
            ids,
            [frames] * len(ids),
        )
        flat = [float(sum(math.log(max(p, 1e-12)) for p in a.text_token_probs)) for a in aligned]
        scores: list[float] = []
        k0 = 0
        for vs in variants:
            scores.append(max(flat[k0 : k0 + len(vs)]))
            k0 += len(vs)
        share = (time.perf_counter() - t0) / k
        hinted = [normalise(raw) if raw else "" for raw in hinted_raw]
        # a reading competes only if it accounts for the audio about as fully as the heard
        # text does (a short text scores a higher total log-prob: "请，感谢" for a long turn)
        n0 = _chars(utt.text)
        covers = [n0 > 0 and _chars(t) >= COVERAGE * n0 for t in hinted]
        others = [*zip(scores[1 : 1 + k], covers, strict=True)]
        others += [  # the reference reading, held to the same coverage
            (sc, n0 > 0 and _chars(normalise(t)) >= COVERAGE * n0)
            for sc, t in zip(scores[1 + k :], reference_raw, strict=True)
        ]
        best = max([scores[0], *(sc for sc, c in others if c)])
        scores = scores[: 1 + k]
        return Decoded(
            utt.index, utt.text, tuple(hinted), scores[0], tuple(scores[1:]), tuple(covers),
            best, share,
        )  # fmt: skip

    def judge(self, d: Decoded, hints: Sequence[RuleHint], pack: RulePack) -> list[Check]:
        """Each hint's check of a :meth:`decode`: the phrases its reading adds (by the
        pack's matcher), accepted within the margin of the best reading."""
        out: list[Check] = []
        for h, text, sc, cover in zip(hints, d.hinted, d.scores, d.covers, strict=True):
            phrases = tuple(new_phrases(pack, h, d.heard, text)) if text else ()
            # within the margin of the best reading of this audio: the heard text's, or
            # another rule's hinted one
            ok = bool(phrases) and cover and sc >= d.best - self.margin
            out.append(
                Check(h.rule_id, d.index, d.heard, text, phrases, d.score_heard, sc, ok, d.share)
            )
        return out


def verify_plan(
    pack: RulePack, transcript: Transcript, segments: Collection[int]
) -> dict[int, list[RuleHint]]:
    """The utterances to decode again (by index) and the hints of each: those in the scope
    of each ``require`` rule ``transcript`` does not meet, that have audio (``segments``)
    and heard text, at most :data:`MAX_UTTERANCES` per rule (the least confident)."""
    from .messages import Verdict
    from .rules.runtime.engine import score_unmet

    card, unmet = score_unmet(pack, transcript)
    open_ = {v.rule_id for v in card.verdicts if v.verdict in (Verdict.FAILED, Verdict.UNCERTAIN)}
    unmet = [(r, scope) for r, scope in unmet if r in open_]
    if not unmet:
        return {}
    by_index = {u.index: u for u in transcript.utterances}
    wanted: dict[int, list[RuleHint]] = {}
    for rule_id, scope in unmet:
        hint = rule_hint(pack, rule_id)
        if hint is None:
            continue
        utts = [by_index[i] for i in scope if i in by_index and i in segments]
        utts = [u for u in utts if u.text]  # unreadable speech: no heard text to weigh
        if len(utts) > MAX_UTTERANCES:
            utts = sorted(utts, key=lambda u: u.confidence)[:MAX_UTTERANCES]
        for u in utts:
            wanted.setdefault(u.index, []).append(hint)
    return wanted


def take_checks(call_id: str, found: dict[int, list[str]], checks: Sequence[Check]) -> None:
    """Record one utterance's checks: each accepted phrase into ``found`` (as often as
    the rule that heard it most often), each check logged at debug level."""
    for c in checks:
        if log.isEnabledFor(logging.DEBUG):  # texts masked: a log line is an output
            log.debug(
                "%s #%d %s: %r -> %r phrases=%s heard=%.2f hinted=%.2f accepted=%s",
                call_id,
                c.index,
                c.rule_id,
                default_redactor().text(c.heard),
                default_redactor().text(c.hinted),
                c.phrases,
                c.score_heard,
                c.score_hinted,
                c.accepted,
            )
        if c.accepted:  # a phrase as often as the rule that heard it most often
            got = found.setdefault(c.index, [])
            for p in dict.fromkeys(c.phrases):
                got.extend([p] * (c.phrases.count(p) - got.count(p)))


def verify_apply(transcript: Transcript, found: dict[int, list[str]]) -> Transcript:
    """``transcript`` with the accepted phrases in ``Utterance.verified``."""
    from dataclasses import replace as dc_replace

    from .messages import replace

    if not found:
        return transcript
    return dc_replace(
        transcript,
        utterances=tuple(
            replace(u, verified=tuple(found[u.index])) if u.index in found else u
            for u in transcript.utterances
        ),
    )


def verify_transcript(
    engine: AsrEngine,
    pack: RulePack,
    transcript: Transcript,
    segments: dict[int, SpeechSegment],
    margin: float,
    checks: list[Check] | None = None,
) -> Transcript:
    """``transcript`` with the phrases verification accepts in ``Utterance.verified``:
    the utterances in the scope of each ``require`` rule it does not meet, decoded again
    with that rule's phrases as hotwords (``segments``: each utterance's audio by index).
    Every decode made is appended to ``checks`` when given."""
    wanted = verify_plan(pack, transcript, segments)
    if not wanted:
        return transcript
    verifier = Verifier(engine, margin)
    by_index = {u.index: u for u in transcript.utterances}
    found: dict[int, list[str]] = {}
    for i, hints in sorted(wanted.items()):
        got = verifier.check(segments[i], by_index[i], hints, pack)
        take_checks(transcript.call.call_id, found, got)
        if checks is not None:
            checks.extend(got)
    return verify_apply(transcript, found)
