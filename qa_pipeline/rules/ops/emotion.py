"""``emotion``: customer anger or agent impatience in the utterance.

The words decide (the lexicon in ``rules/data/emotion/``, written for this project under
its Apache-2.0 licence; negation, whose feeling it is, degree words and quotes are read by
:class:`qa_pipeline.rules.emotion.EmotionLexicon`); with ``prosody`` on, a jump in the
speaker's level (dB over their running median) or pace (characters a second over their
median) raises the strength of a turn that already has a cue, never fires one alone. The
speaker's medians are kept per call and channel, over the turns that reach the condition.

Measured on labelled turns (``benchmarks/bench_emotion.py``): precision 43 % on wording
written after the lexicon was frozen, so no rule of the default pack uses it; a pack that
does should keep its severity low and its findings for review.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from ..emotion import EmotionLexicon, SpeakerBaseline
from ..lang.base import Strict
from .registry import CPath, Example, Level, Operator, Trigger, register

if TYPE_CHECKING:
    from ..runtime import nodes as N
    from ..runtime.textindex import Span
    from .compiler import Compiler

# whose cues a kind reads (the lexicon's roles)
_READS = {"anger": "customer", "impatience": "agent"}
_LABELS = {"anger": "客户情绪激动", "impatience": "坐席不耐烦"}
MAX_CALLS = 4096  # speakers' medians kept for this many calls at once (oldest dropped)


class EmotionSpec(Strict):
    kind: Literal["anger", "impatience"]
    min_strength: float = Field(0.6, gt=0, le=1)
    prosody: bool = True


class _Prosody:
    """Each speaker's running level and pace, per call: the jumps of the turn in hand."""

    def __init__(self) -> None:
        # (call id, call context, channel) -> (utterance number, baseline, that turn's jumps)
        self._calls: OrderedDict[
            tuple[str, int, int], tuple[int, SpeakerBaseline, tuple[float | None, float | None]]
        ] = OrderedDict()

    def jumps(self, x: N.UttCtx) -> tuple[float | None, float | None]:
        u = x.u
        key = (u.call_id, id(x.ctx), x.channel)
        got = self._calls.get(key)
        if got is not None and got[0] == x.n:  # the same turn asked again
            return got[2]
        base = got[1] if got is not None and got[0] < x.n else SpeakerBaseline()
        jumps = base.observe(u.text, u.end - u.start, u.level_dbfs)
        self._calls[key] = (x.n, base, jumps)
        self._calls.move_to_end(key)
        if len(self._calls) > MAX_CALLS:
            self._calls.popitem(last=False)
        return jumps


def _compile(cx: Compiler, v: EmotionSpec, p: CPath) -> N.UNode:
    from ..runtime import nodes as N

    lexicon = EmotionLexicon.load()
    reads = _READS[v.kind]
    prosody = _Prosody() if v.prosody else None

    def test(x: N.UttCtx) -> Span | None:
        level, pace = prosody.jumps(x) if prosody is not None else (None, None)
        s = lexicon.score(
            x.u.text, role=reads, level_jump_db=level, pace_jump=pace, simplified=True
        )
        if s.label != v.kind or s.strength < v.min_strength:
            return None
        mf = x.a.mf
        for cue in s.cues:  # the evidence: the first cue as the rules read the text
            i = mf.find(cue)
            if i >= 0:
                return (i, i + len(cue))
        return (0, len(mf))

    return N.UFunc(test)


register(
    Operator(
        name="emotion",
        level=Level.UTTERANCE,
        spec=EmotionSpec,
        shorthand=lambda v: {"kind": v} if isinstance(v, str) else v,
        trigger=Trigger.EVERY_UTTERANCE,
        summary="customer `anger` / agent `impatience` from a lexicon (negation-aware), "
        "raised by a jump in the speaker's level or pace; 43 % precision on held-out "
        "wording, so no default rule uses it",
        example=Example(
            {"emotion": "anger"},
            found=[("c", 0, 3, "你们到底有完没完，气死我了")],
            missing=[("c", 0, 3, "我不生气，就是想问一下")],
        ),
        utt=_compile,
        label=lambda v, label: _LABELS[v.kind],
    ),
    __name__,
)
