"""The rule engine: declarative YAML rule packs evaluated incrementally per call.

>>> pack = load_pack()                       # configs/rules/ of this repository
>>> ev = CallEvaluator(pack, call)           # one per call
>>> ev.feed(utterance)                       # findings decided by this utterance
>>> ev.advance(now)                          # time passed (closes windows on live calls)
>>> card = ev.end(call_ended)                # every rule's verdict, all findings, score
>>> score_transcript(pack, transcript)       # the same code path for a stored call

The language is documented in ``configs/rules/README.md``.
"""

from .engine import CallEvaluator, score_transcript
from .loader import RulePack, default_pack_path, load_pack

__all__ = ["CallEvaluator", "RulePack", "default_pack_path", "load_pack", "score_transcript"]
