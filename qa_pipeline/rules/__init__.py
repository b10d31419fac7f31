"""The rule engine: declarative YAML rule packs evaluated incrementally per call.

>>> pack = load_pack()                       # configs/rules/ of this repository
>>> ev = CallEvaluator(pack, call)           # one per call
>>> ev.feed(utterance)                       # findings decided by this utterance
>>> ev.advance(now)                          # time passed (closes windows on live calls)
>>> card = ev.end(call_ended)                # every rule's verdict, all findings, score
>>> score_transcript(pack, transcript)       # the same code path for a stored call

Three layers, each importing only the ones before it in spirit:

* :mod:`.lang` — the QA lead's language: schema, loader (specs + problems), lint, fixtures;
* :mod:`.ops` — one module per operator family (its spec, compile step, label, children,
  trigger and example), all listed in one registry (:mod:`.ops.registry`);
* :mod:`.runtime` — the mypyc-compiled evaluator: engine, nodes, text index, timeline,
  scoring.

The language is documented in ``configs/rules/README.md``.
"""

from .lang.loader import RulePack, default_pack_path, load_pack
from .runtime import ENGINE  # first: loads the compiled (or pure) runtime modules
from .runtime.batch import batch_gc
from .runtime.engine import CallEvaluator, score_transcript

__all__ = [
    "ENGINE",
    "CallEvaluator",
    "batch_gc",
    "RulePack",
    "default_pack_path",
    "load_pack",
    "score_transcript",
]
