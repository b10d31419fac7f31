"""The live-call service (``qa-pipeline serve``): many concurrent lines, one shared model.

* :mod:`.config` - the serve config file (sources, live ASR, metrics, shutdown).
* :mod:`.session` - one :class:`~.session.CallSession` per call, owning it end to end:
  frames in; utterances, findings and the scorecard out. Its parts:
  :mod:`.segmenter` (clock alignment and VAD per channel), the shared ASR
  (:mod:`.asr_worker`: typed jobs, answers back to the session, results released in
  order) and :mod:`.evaluator` (the call's incremental rules on the rule lane).
* :mod:`.decoder` / :mod:`.asr_worker` - the shared ASR: full 30 s window or a window fitted
  to the utterance with batches across lines; bounded queue with counted drops.
* :mod:`.service` - admission, routing of frames to sessions, what calls share (ASR
  worker, rule lane, sinks, metrics, ticks).
* :mod:`.cli` - the ``serve`` command.
"""

from .config import ServeConfig, load_serve_config
from .service import LiveService

__all__ = ["LiveService", "ServeConfig", "load_serve_config"]
