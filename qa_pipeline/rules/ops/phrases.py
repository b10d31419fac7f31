"""Phrase operators on one utterance: ``keyword`` (exact, on the match form), ``regex``
(RE2, linear time), ``fuzzy`` (sound-alike, robust to ASR) and ``similar`` (whole-sentence
similarity to examples)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from ..lang.base import Phrases, Strict, _nonempty_phrases
from ..lang.linear_regex import compile_pattern
from .registry import CPath, Example, Issue, Level, LintCtx, Operator, Trigger, register

if TYPE_CHECKING:
    from ..runtime import nodes as N
    from .compiler import Compiler


def _short(ph: list[str]) -> str:
    return "/".join(ph[:3]) + ("…" if len(ph) > 3 else "")


# --------------------------------------------------------------------------- keyword


class KeywordSpec(Strict):
    """Exact phrases on the match form (digits and Chinese numerals folded together)."""

    any: Phrases | None = None
    all: Phrases | None = None
    none: Phrases | None = None
    at_least: int | None = Field(None, ge=1)
    of: Phrases | None = None
    at: Literal["anywhere", "start", "end", "whole"] = "anywhere"

    @model_validator(mode="after")
    def _one(self) -> KeywordSpec:
        kinds = [k for k in ("any", "all", "none") if getattr(self, k) is not None]
        if self.at_least is not None or self.of is not None:
            if self.at_least is None or self.of is None:
                raise ValueError("at_least needs 'of' (and 'of' needs at_least)")
            kinds.append("at_least")
        if len(kinds) != 1:
            raise ValueError("keyword needs exactly one of any / all / none / at_least+of")
        for k in ("any", "all", "none", "of"):
            v = getattr(self, k)
            if v is not None:
                _nonempty_phrases(v)
        if self.at_least is not None and self.of is not None and self.at_least > len(self.of):
            raise ValueError(f"at_least {self.at_least} > {len(self.of)} phrases: never true")
        return self


def _kw_short(v: Any) -> Any:
    if isinstance(v, str):
        return {"any": [v]}
    return {"any": v} if isinstance(v, list) else v


def _keyword(cx: Compiler, v: KeywordSpec, p: CPath) -> N.UNode:
    from ..runtime import nodes as N

    if v.any is not None:
        return N.UKeywordAny(cx.atoms(v.any, (*p, "any")), v.at)
    if v.all is not None:
        return N.UKeywordAll(cx.atoms(v.all, (*p, "all")))
    if v.none is not None:
        return N.UKeywordNone(cx.atoms(v.none, (*p, "none")))
    assert v.of is not None and v.at_least is not None
    return N.UKeywordAtLeast(cx.atoms(v.of, (*p, "of")), v.at_least)


register(
    Operator(
        name="keyword",
        level=Level.UTTERANCE,
        spec=KeywordSpec,
        shorthand=_kw_short,
        # `none` holds on utterances without the phrases: every utterance is looked at
        trigger=lambda v: Trigger.EVERY_UTTERANCE if v.none is not None else Trigger.PHRASES,
        trigger_doc="utterances where one of its phrases is found (`none`: every utterance)",
        summary="exact phrases: `any` / `all` / `none` / `at_least` N `of`; `at` start, end, whole",
        example=Example(
            {"keyword": ["工号"]},
            found=[("a", 0, 1, "我的工号是一二三")],
            missing=[("a", 0, 1, "您好")],
        ),
        utt=_keyword,
        label=lambda v, label: _short(v.any or v.all or v.none or v.of or []),
    ),
    __name__,
)


# --------------------------------------------------------------------------- regex


class RegexSpec(Strict):
    """Python ``re`` syntax, run on RE2 in linear time (:mod:`..lang.linear_regex`); a
    pattern RE2 cannot run the same way is refused here, at load, with the reason."""

    pattern: str
    exclude: str | None = None

    @field_validator("pattern", "exclude")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            compile_pattern(v)  # PatternError is a ValueError: the reason, as the message
        return v


def _regex(cx: Compiler, v: RegexSpec, p: CPath) -> N.UNode:
    from ..runtime import nodes as N

    return N.ULazy(cx.ix, [cx.ix.regex(v.pattern, v.exclude)])


register(
    Operator(
        name="regex",
        level=Level.UTTERANCE,
        spec=RegexSpec,
        shorthand=lambda v: {"pattern": v} if isinstance(v, str) else v,
        trigger=Trigger.PHRASES,
        summary="a regular expression (RE2, linear time), with an optional `exclude`",
        example=Example(
            {"regex": "工号[0-9一二三四五六七八九零]+"},
            found=[("a", 0, 1, "我的工号1234")],
            missing=[("a", 0, 1, "您好")],
        ),
        utt=_regex,
        label=lambda v, label: v.pattern,
    ),
    __name__,
)


# --------------------------------------------------------------------------- fuzzy


class FuzzySpec(Strict):
    phrases: Phrases
    threshold: float = Field(85.0, ge=50, le=100)

    @field_validator("phrases")
    @classmethod
    def _ne(cls, v: list[str]) -> list[str]:
        return _nonempty_phrases(v)


def _fuzzy(cx: Compiler, v: FuzzySpec, p: CPath) -> N.UNode:
    from ..runtime import nodes as N
    from .compiler import CompileError

    atoms = []
    for i, ph in enumerate(v.phrases):
        try:
            atoms.append(cx.ix.fuzzy(ph, v.threshold))
        except ValueError as e:
            raise CompileError((*p, "phrases", i), str(e)) from e
    return N.ULazy(cx.ix, atoms)


def _fuzzy_lint(cx: LintCtx, v: FuzzySpec) -> list[Issue]:
    from ...text import match_form
    from ..runtime.textindex import fold_text, syllables

    return [
        ("warning", f"{cx.where}.fuzzy: {ph!r} is one syllable: matched exactly")
        for ph in v.phrases
        if len(syllables(fold_text(match_form(ph)))) < 2
    ]


register(
    Operator(
        name="fuzzy",
        level=Level.UTTERANCE,
        spec=FuzzySpec,
        shorthand=lambda v: (
            {"phrases": [v] if isinstance(v, str) else v} if isinstance(v, (list, str)) else v
        ),
        trigger=Trigger.PHRASES,
        summary="phrases matched by sound (pinyin), robust to ASR errors; `threshold` 50-100",
        example=Example(
            {"fuzzy": ["请您稍等"]},
            found=[("a", 0, 1, "千年少等")],
            missing=[("a", 0, 1, "今天天气")],
        ),
        utt=_fuzzy,
        label=lambda v, label: _short(v.phrases),
        lint=_fuzzy_lint,
    ),
    __name__,
)


# --------------------------------------------------------------------------- similar


class SimilarSpec(Strict):
    examples: Phrases
    threshold: float = Field(75.0, ge=30, le=100)

    @field_validator("examples")
    @classmethod
    def _ne(cls, v: list[str]) -> list[str]:
        return _nonempty_phrases(v, "example list")


def _similar_short(v: Any) -> Any:
    if isinstance(v, str):
        return {"examples": [v]}
    return {"examples": v} if isinstance(v, list) else v


def _similar(cx: Compiler, v: SimilarSpec, p: CPath) -> N.UNode:
    from ..runtime import nodes as N

    return N.ULazy(cx.ix, [cx.ix.similar(v.examples, v.threshold)])


register(
    Operator(
        name="similar",
        level=Level.UTTERANCE,
        spec=SimilarSpec,
        shorthand=_similar_short,
        trigger=Trigger.PHRASES,
        summary="the whole utterance is similar to one of the `examples`",
        example=Example(
            {"similar": {"examples": ["请问还有其他问题吗"], "threshold": 70}},
            found=[("a", 0, 1, "请问您还有其他的问题吗")],
            missing=[("a", 0, 1, "再见")],
        ),
        utt=_similar,
        label=lambda v, label: v.examples[0],
    ),
    __name__,
)
