"""The rule engine: declarative YAML rule packs evaluated incrementally per call.

>>> pack = load_pack()                       # configs/rules/ of this repository
>>> ev = CallEvaluator(pack, call)           # one per call
>>> ev.feed(utterance)                       # findings decided by this utterance
>>> ev.advance(now)                          # time passed (closes windows on live calls)
>>> card = ev.end(call_ended)                # every rule's verdict, all findings, score
>>> score_transcript(pack, transcript)       # the same code path for a stored call

Layers, each importing only those below it (``[tool.importlinter]`` in pyproject.toml
checks it), top first:

* :mod:`.cli`, then :mod:`.lint` (a whole pack's lint: load and compile errors, fixture
  coverage, each rule's spec lint), :mod:`.fixtures` (runs calls through the engine) and
  :mod:`.pack` (``load_pack``: a pack read by :mod:`.lang` and compiled into a
  :class:`RulePack`);
* :mod:`.ops` — one module per operator family (its spec, compile step, label, children,
  trigger and example), each registering into the registry; and the compiler;
* :mod:`.runtime` — the mypyc-compiled evaluator: engine, nodes, text index, timeline,
  scoring;
* :mod:`.lang` — the QA lead's language: the operator registry, the schema (its
  conditions derived from the registry), the reader (YAML -> specs + problems), labels,
  each rule's spec lint. It imports nothing above it: the operators plug into its
  registry, imported here first.

The language is documented in ``configs/rules/README.md``.
"""

from . import ops as _ops  # noqa: F401  (registers the built-in operators)
from .pack import RulePack, default_pack_path, load_pack
from .runtime import ENGINE  # loads the compiled (or pure) runtime modules
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
